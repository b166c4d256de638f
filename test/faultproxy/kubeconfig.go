package faultproxy

import (
	"crypto/tls"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TLSFor is the TLS configuration a rest.Config uses (CA, client
// certificate), for the proxy to reach the API server as that identity.
func TLSFor(cfg *rest.Config) (*tls.Config, error) {
	t, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: TLS configuration of %s: %w", cfg.Host, err)
	}
	if t == nil {
		return nil, fmt.Errorf("faultproxy: %s has no TLS configuration: the upstream must be https", cfg.Host)
	}
	return t, nil
}

// WriteKubeconfig writes a kubeconfig whose only cluster is the proxy, with
// no credentials: the proxy presents its own to the API server.
func (p *Proxy) WriteKubeconfig(path string) error {
	return WriteKubeconfig(path, p.URL())
}

// WriteKubeconfig writes a credential-less kubeconfig for server (the
// proxy's http:// URL).
func WriteKubeconfig(path, server string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["faultproxy"] = &clientcmdapi.Cluster{Server: server}
	cfg.AuthInfos["faultproxy"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["faultproxy"] = &clientcmdapi.Context{Cluster: "faultproxy", AuthInfo: "faultproxy"}
	cfg.CurrentContext = "faultproxy"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("faultproxy: writing kubeconfig %s: %w", path, err)
	}
	return nil
}
