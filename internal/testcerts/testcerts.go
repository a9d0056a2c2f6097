// Package testcerts writes throwaway PEM certificates for TLS tests: a CA,
// a server certificate for 127.0.0.1/localhost and a client certificate,
// all signed by the CA, plus an unrelated "rogue" CA and a client signed by
// it. ECDSA P-256, valid for one hour. Never use them outside tests.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Set names the PEM files written by Write.
type Set struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	RogueCA, RogueClientCert, RogueClientKey         string
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func write(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func make1(dir, name string, tmpl *x509.Certificate, by *issuer) (*issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, big.NewInt(1<<62)); err != nil {
		return nil, err
	}
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	parent, signer := tmpl, key
	if by != nil {
		parent, signer = by.cert, by.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := write(filepath.Join(dir, name+".pem"), "CERTIFICATE", der); err != nil {
		return nil, err
	}
	if err := write(filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", kder); err != nil {
		return nil, err
	}
	return &issuer{cert, key}, nil
}

func ca(cn string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
}

func leaf(cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
}

// Write creates the files in dir.
func Write(dir string) (Set, error) {
	p := func(n string) string { return filepath.Join(dir, n) }
	s := Set{CA: p("ca.pem"), ServerCert: p("server.pem"), ServerKey: p("server-key.pem"),
		ClientCert: p("client.pem"), ClientKey: p("client-key.pem"),
		RogueCA: p("rogue-ca.pem"), RogueClientCert: p("rogue-client.pem"), RogueClientKey: p("rogue-client-key.pem")}
	root, err := make1(dir, "ca", ca("meridian test CA"), nil)
	if err != nil {
		return s, err
	}
	if _, err := make1(dir, "server", leaf("meridiand", x509.ExtKeyUsageServerAuth), root); err != nil {
		return s, err
	}
	if _, err := make1(dir, "client", leaf("meridianctl", x509.ExtKeyUsageClientAuth), root); err != nil {
		return s, err
	}
	rogue, err := make1(dir, "rogue-ca", ca("rogue CA"), nil)
	if err != nil {
		return s, err
	}
	_, err = make1(dir, "rogue-client", leaf("intruder", x509.ExtKeyUsageClientAuth), rogue)
	return s, err
}
