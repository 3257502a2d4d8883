package main

import "syscall"

// childProcAttr puts a child in its own process group and has the kernel
// send it SIGTERM if we die without stopping it (kill -9 of `cloudimages
// dev`), so that no child is left behind.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
