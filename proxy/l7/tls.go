package l7

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// CertFile is one certificate chain + private key pair, PEM files.
type CertFile struct {
	CertFile string
	KeyFile  string
}

// LoadCertificates reads the pairs and returns a server tls.Config: TLS 1.2+,
// Go's modern cipher suites (AEAD, forward secrecy), ALPN h2 and http/1.1, and
// SNI selection among the certificates by their DNS names, wildcards included
// (the first certificate is the default when no name matches). Called at start,
// on reload (certificates are re-read) and by `palisade check`; errors name the
// file and the cause (unreadable file, bad PEM, key not matching certificate).
func LoadCertificates(certs []CertFile) (*tls.Config, error) {
	if len(certs) == 0 {
		return nil, errors.New("no certificates configured")
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		CurvePreferences: []tls.CurveID{
			tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384,
		},
	}
	for _, cf := range certs {
		certPEM, err := os.ReadFile(cf.CertFile)
		if err != nil {
			return nil, fmt.Errorf("reading certificate: %w", err)
		}
		keyPEM, err := os.ReadFile(cf.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("reading key: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("certificate %s with key %s: %w", cf.CertFile, cf.KeyFile, err)
		}
		if pair.Leaf == nil {
			if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
				return nil, fmt.Errorf("certificate %s: %w", cf.CertFile, err)
			}
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	return cfg, nil
}
