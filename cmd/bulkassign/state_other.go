//go:build !unix

package main

import (
	"errors"
	"os"
)

// tryLock cannot lock a file here: run's state needs a Unix system.
func tryLock(*os.File) (busy bool, err error) {
	return false, errors.New("run keeps a resumable state only on Unix systems: use --redis, or --embedded memory")
}
