//go:build !linux

package redisproc

import "syscall"

// sysProcAttr has nothing to add where there is no parent-death signal;
// Main and t.Cleanup stop the servers.
func sysProcAttr() *syscall.SysProcAttr { return nil }
