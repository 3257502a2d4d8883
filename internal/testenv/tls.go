package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// AgentCA is a certificate authority made for one test and a server
// certificate for 127.0.0.1 it signed, as PEM files: CertFile and KeyFile
// for the agents' --tls-cert and --tls-key, CAFile for --agent-ca-file.
type AgentCA = CA

// CA is a certificate authority made for one test and a server
// certificate it signed, as PEM files (CAFile for a --ca-file, CertFile
// and KeyFile for a server) and as a tls.Certificate to serve with.
type CA struct {
	CAFile, CertFile, KeyFile string
	// ClientTLS trusts the CA (and nothing else).
	ClientTLS *tls.Config
	// Cert is the server certificate with its key.
	Cert tls.Certificate
}

// NewAgentCA writes a fresh CA and a certificate for 127.0.0.1 into a
// temporary directory.
func NewAgentCA(t testing.TB) AgentCA {
	t.Helper()
	return NewCA(t, "127.0.0.1")
}

// NewCA writes a fresh CA, and a server certificate it signed for hosts
// (IP addresses or names), into a temporary directory.
func NewCA(t testing.TB, hosts ...string) CA {
	t.Helper()
	c, err := WriteCA(t.TempDir(), hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// WriteCA writes a fresh CA, and a server certificate it signed for hosts,
// into dir (ca.pem, server.pem, server-key.pem), for the bench as for tests.
func WriteCA(dir string, hosts ...string) (CA, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return CA{}, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return CA{}, err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test agents CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return CA{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return CA{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return CA{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return CA{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return CA{}, err
	}
	c := CA{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem")}
	for path, b := range map[string]*pem.Block{
		c.CAFile:   {Type: "CERTIFICATE", Bytes: caDER},
		c.CertFile: {Type: "CERTIFICATE", Bytes: der},
		c.KeyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
			return CA{}, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c.ClientTLS = &tls.Config{RootCAs: pool}
	c.Cert, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	return c, err
}
