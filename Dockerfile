# Builds the bulkassign CLI into a small image that runs as a non-root user.
#
#   docker build -t bulkassign .
#   docker run --rm bulkassign run --simulate /data/owners.csv
#
# Used by docker-compose.yml for the simulator, worker and server services.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so editing code does not re-download them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binary: the runtime image has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bulkassign ./cmd/bulkassign \
	&& mkdir -p /out/reports

# distroless/static: CA certificates and tzdata, no shell, no package manager;
# the :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bulkassign /usr/local/bin/bulkassign
# reports/ (the default --out) owned by the runtime user, so a volume mounted
# there starts writable.
COPY --from=build --chown=65532:65532 /out/reports /home/nonroot/reports
WORKDIR /home/nonroot
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/bulkassign"]
CMD ["--help"]
