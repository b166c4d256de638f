package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// pki is the cluster's certificate authority and the files generated from it.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  crypto.Signer

	caFile          string // CA certificate: client CA of the API server, root CA of kubeconfigs
	caKeyFile       string
	servingCertFile string // kube-apiserver serving certificate and key
	servingKeyFile  string
	saKeyFile       string // service-account token signing key (private) ...
	saPubFile       string // ... and its public half, for verifying tokens
}

// certValidity is long enough for any test run and for a developer's `cluster up` left open over a weekend.
const certValidity = 30 * 24 * time.Hour

// newPKI creates a CA, the API server's serving certificate and the service-account key pair in dir.
func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	p := &pki{
		dir:             dir,
		caFile:          filepath.Join(dir, "ca.crt"),
		caKeyFile:       filepath.Join(dir, "ca.key"),
		servingCertFile: filepath.Join(dir, "apiserver.crt"),
		servingKeyFile:  filepath.Join(dir, "apiserver.key"),
		saKeyFile:       filepath.Join(dir, "sa.key"),
		saPubFile:       filepath.Join(dir, "sa.pub"),
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "canaryd-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	p.caCert, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA: %w", err)
	}
	p.caKey = caKey
	if err := writeCert(p.caFile, der); err != nil {
		return nil, err
	}
	if err := writeKey(p.caKeyFile, caKey); err != nil {
		return nil, err
	}

	// The serving certificate covers every name a client could use for the API server here, including the
	// in-cluster ones (kubernetes.default…) so that a kubeconfig built for a pod would verify too.
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	}
	if err := p.issue(serving, p.servingCertFile, p.servingKeyFile); err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}

	// RSA, because the service-account key flags of every Kubernetes version accept it.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	if err := writeKey(p.saKeyFile, saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}
	if err := os.WriteFile(p.saPubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return nil, fmt.Errorf("write service-account public key: %w", err)
	}
	return p, nil
}

// issue signs tmpl (subject, usages, SANs filled in by the caller) with the CA and writes certificate and key.
func (p *pki) issue(tmpl *x509.Certificate, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(certValidity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		return fmt.Errorf("sign %q: %w", tmpl.Subject.CommonName, err)
	}
	if err := writeCert(certFile, der); err != nil {
		return err
	}
	return writeKey(keyFile, key)
}

// clientCert issues a client certificate into user-<name>.{crt,key}: the API server reads the user name
// from CN and the groups from O.
func (p *pki) clientCert(name, user string, groups []string) (certFile, keyFile string, err error) {
	certFile = filepath.Join(p.dir, "user-"+name+".crt")
	keyFile = filepath.Join(p.dir, "user-"+name+".key")
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := p.issue(tmpl, certFile, keyFile); err != nil {
		return "", "", fmt.Errorf("client certificate for %q: %w", user, err)
	}
	return certFile, keyFile, nil
}

// writeKubeconfig writes a kubeconfig for server with either a client certificate or a bearer token.
// Paths are embedded as file references so that the files stay the single source of truth.
func writeKubeconfig(path, server, caFile string, auth clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["canaryd-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["user"] = &auth
	cfg.Contexts["canaryd-test"] = &clientcmdapi.Context{Cluster: "canaryd-test", AuthInfo: "user", Namespace: "default"}
	cfg.CurrentContext = "canaryd-test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

func writeCert(path string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write certificate: %w", err)
	}
	return nil
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	return nil
}

// serial returns a random 128-bit serial number, so that certificates issued in the same second differ.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		// crypto/rand does not fail on Linux; a constant serial only matters for revocation, which we don't do.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// safeFileName maps a user name such as "system:serviceaccount:ns:sa" to a file-name-safe string.
func safeFileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '.' && c != '_' {
			b[i] = '_'
		}
	}
	return string(b)
}
