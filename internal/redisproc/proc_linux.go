package redisproc

import "syscall"

// sysProcAttr makes the kernel kill redis-server when the process that
// started it dies without stopping it (kill -9, a panic, a test's
// -timeout), and puts it in a process group of its own, so that a Ctrl-C
// on the terminal reaches only its parent, which still needs it to write
// the report and stops it afterwards.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
