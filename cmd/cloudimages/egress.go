package main

import "github.com/quantix/cloudimages/internal/egress"

// registerEgress adds the flags of how the agent and the worker reach
// mirrors: a proxy and a private CA bundle.
func registerEgress(f *flags, proxy, caFile *string) {
	f.stringShown(proxy, "proxy", egress.ProxyEnv, "", "HTTP proxy for mirrors, http://[USER:PASSWORD@]HOST:PORT (default: HTTPS_PROXY/HTTP_PROXY, with NO_PROXY's exceptions)", egress.Redact)
	f.string(caFile, "ca-file", egress.CAEnv, "", "PEM bundle of CAs trusted for mirrors besides the system's (a private CA, or the proxy's)")
}

// checkEgress refuses a proxy URL or a CA bundle that cannot be used,
// without showing the proxy's password.
func checkEgress(proxy, caFile string) error {
	if _, err := egress.NewProxy(proxy); err != nil {
		return usagef("%v", err)
	}
	if _, err := egress.RootCAs(caFile); err != nil {
		return usagef("%v", err)
	}
	return nil
}
