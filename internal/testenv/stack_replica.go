package testenv

import "strconv"

// AddAPI starts another API process on the stack's database and Temporal
// server, a replica as behind a load balancer in production, named name
// in logs. It returns the process and its base URL; Stack.API keeps
// talking to the first one.
func (s *Stack) AddAPI(name string) (*Process, string) {
	s.t.Helper()
	lp := s.control.API("")
	lp.Name = name
	p := newProcess(s.t, lp)
	var url string
	p.startOnFreePort(func() {
		addr := "127.0.0.1:" + strconv.Itoa(FreePort(s.t))
		url = "http://" + addr
		s.control.ApplyAPI(lp, addr, s.TemporalWebURL())
	})
	return p, url
}
