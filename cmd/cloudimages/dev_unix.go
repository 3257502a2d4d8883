//go:build unix && !linux

package main

import "syscall"

// childProcAttr puts a child in its own process group, so that Ctrl-C
// reaches only `cloudimages dev`, which stops the children in order.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
