package redisproc

import "syscall"

// sysProcAttr makes the kernel stop redis-server when the test binary dies
// without running its cleanups (a panic or a -timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
