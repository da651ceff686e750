package subscription

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// hostGuard keeps rest-hook deliveries off the server's own network (SSRF):
// a target that is, or resolves to, a loopback, private, link-local,
// unspecified or multicast address is refused unless allowed by name,
// address or range (--subscription-allow-hosts). The check is made on the
// address actually dialled, so a name that resolves differently later
// (DNS rebinding) is caught too.
type hostGuard struct {
	names    map[string]bool
	prefixes []netip.Prefix
}

func newHostGuard(allow []string) (*hostGuard, error) {
	g := &hostGuard{names: map[string]bool{}}
	for _, a := range allow {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if p, err := netip.ParsePrefix(a); err == nil {
			g.prefixes = append(g.prefixes, p.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(a); err == nil {
			g.prefixes = append(g.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		if strings.ContainsAny(a, "/ :") {
			return nil, fmt.Errorf("--subscription-allow-hosts: %q is not a host name, address or CIDR range", a)
		}
		g.names[strings.ToLower(a)] = true
	}
	return g, nil
}

// internal reports whether ip is of the server's own networks.
func internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(ip) // carrier-grade NAT
}

// allowedIP reports whether dialling ip (reached through host) is allowed.
func (g *hostGuard) allowedIP(host string, ip netip.Addr) bool {
	if !internal(ip) || g.names[strings.ToLower(host)] {
		return true
	}
	for _, p := range g.prefixes {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// checkLiteral refuses at write time an endpoint that names an internal
// address literally (or localhost); names are checked when dialled.
func (g *hostGuard) checkLiteral(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil && !g.allowedIP(host, ip) {
		return fmt.Errorf("endpoint %s is an internal address; the server refuses to call it unless --subscription-allow-hosts allows it", host)
	}
	if strings.EqualFold(host, "localhost") && !g.allowedIP(host, netip.MustParseAddr("127.0.0.1")) {
		return fmt.Errorf("endpoint %s is this server's own host; the server refuses to call it unless --subscription-allow-hosts allows it", host)
	}
	return nil
}

// transport is the rest-hook HTTP transport: TLS verified (Go's default),
// no proxy from the environment (a proxy would dial for us, past the
// guard), and every dial checked against the guard.
func (g *hostGuard) transport() *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		d := *dialer
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			if !g.allowedIP(host, ap.Addr()) {
				return fmt.Errorf("refused to call %s (%s): an internal address; --subscription-allow-hosts can allow it", host, ap.Addr())
			}
			return nil
		}
		return d.DialContext(ctx, network, addr)
	}
	return t
}
