package simulator

import "net/http"

// Faults are decided per (contact, member) pair by a hash, so the same input
// fails the same way on every run and in every simulator with the same
// options.

// hangSalt separates the hang draw from the transient draw of a pair.
const hangSalt = 0x9e3779b97f4a7c15

// transientCodes are the statuses a transient fault answers, picked by hash
// and attempt.
var transientCodes = [...]int{
	http.StatusServiceUnavailable,
	http.StatusInternalServerError,
	http.StatusBadGateway,
}

// fault counts an attempt of a faulty pair and returns the status it must
// fail with, or 0 to let it succeed. A hanging pair's first call hangs
// (http.StatusGatewayTimeout); a transient pair's first TransientAttempts
// calls fail with 500, 502 or 503. A pair that is both hangs on its first
// call and fails transiently up to TransientAttempts calls in all.
func (s *Simulator) fault(contact, member string) int {
	if s.opts.Transient == 0 && s.opts.Hang == 0 {
		return 0
	}
	h := pairHash(contact, member)
	hang := s.opts.Hang > 0 && unit(mix(h^hangSalt)) < s.opts.Hang
	transient := s.opts.Transient > 0 && unit(mix(h)) < s.opts.Transient
	if !hang && !transient {
		return 0
	}
	key := contact + "\x00" + member
	s.faultMu.Lock()
	n := s.attempts[key] + 1
	s.attempts[key] = n
	s.faultMu.Unlock()
	switch {
	case hang && n == 1:
		return http.StatusGatewayTimeout
	case transient && n <= s.opts.TransientAttempts:
		return transientCodes[(mix(h^uint64(n))>>32)%uint64(len(transientCodes))]
	}
	return 0
}

// FNV-1a, 64 bit (hash/fnv), written out over strings so it does not
// allocate.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// pairHash is the FNV-1a hash of "contact\x00member".
func pairHash(contact, member string) uint64 {
	h := fnvString(fnvOffset, contact)
	h ^= 0
	h *= fnvPrime
	return fnvString(h, member)
}

// shardOf picks the state shard of a contact.
func shardOf(contact string) int {
	return int(mix(fnvString(fnvOffset, contact)) & (numShards - 1))
}

// mix is the splitmix64 finalizer: it spreads FNV's bits so that any range
// of the result is uniform.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// unit maps a hash to [0, 1).
func unit(x uint64) float64 {
	return float64(x>>11) / (1 << 53)
}
