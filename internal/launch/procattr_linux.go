package launch

import "syscall"

// procAttr puts a child in its own process group, so that Ctrl-C reaches
// only its parent, which stops the children in order, and a kill of the
// group reaches anything the child started; and it has the kernel send the
// child SIGTERM if the parent dies without stopping it (kill -9), so that
// no child is left behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
