package redistest

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestCheckURLRefusesDB0(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379", "redis://:secret@127.0.0.1:6379"} {
		err := checkURL(u)
		if err == nil || !strings.Contains(err.Error(), "names DB 0; tests never write DB 0") {
			t.Errorf("checkURL(%s) = %v, want the DB 0 refusal", u, err)
		}
	}
}

func TestCheckURLUnreachableIsClear(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	u := "redis://:hunter2@127.0.0.1:" + strconv.Itoa(port) + "/9"
	err = checkURL(u)
	if err == nil {
		t.Fatal("checkURL of a closed port succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "hunter2") || !strings.Contains(msg, "apt-get install redis-server") {
		t.Errorf("error = %q: want the password hidden and how to get Redis", msg)
	}
}
