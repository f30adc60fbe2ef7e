package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// runProbe runs an httpGet or tcpSocket probe against the pod. exec probes would need the
// image's filesystem, which processes do not have; they count as passing (documented).
func runProbe(h corev1.ProbeHandler, podIP net.IP, c corev1.Container, timeout time.Duration) bool {
	switch {
	case h.HTTPGet != nil:
		port, err := portNumber(c, h.HTTPGet.Port.String())
		if err != nil {
			return false
		}
		host := h.HTTPGet.Host
		if host == "" {
			host = podIP.String()
		}
		scheme := "http"
		if h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		req, err := http.NewRequest("GET", fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), h.HTTPGet.Path), nil)
		if err != nil {
			return false
		}
		for _, hd := range h.HTTPGet.HTTPHeaders {
			req.Header.Add(hd.Name, hd.Value)
		}
		client := &http.Client{
			Timeout:       timeout,
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400
	case h.TCPSocket != nil:
		port, err := portNumber(c, h.TCPSocket.Port.String())
		if err != nil {
			return false
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(podIP.String(), strconv.Itoa(port)), timeout)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	default:
		return true
	}
}
