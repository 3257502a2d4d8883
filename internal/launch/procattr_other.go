//go:build unix && !linux

package launch

import "syscall"

// procAttr puts a child in its own process group, so that Ctrl-C reaches
// only its parent, which stops the children in order.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
