package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// logWriter stores container output one line at a time, each prefixed with its RFC 3339
// timestamp (as CRI runtimes do), so `kubectl logs --timestamps/--since-time` work.
type logWriter struct {
	mu      sync.Mutex
	f       *os.File
	partial []byte
}

func openLog(path string) (*logWriter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &logWriter{f: f}, nil
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := w.partial[:i+1]
		if _, err := fmt.Fprintf(w.f, "%s %s", time.Now().UTC().Format(time.RFC3339Nano), line); err != nil {
			return 0, err
		}
		w.partial = w.partial[i+1:]
	}
	return len(b), nil
}

// Flush writes a last line without a newline.
func (w *logWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		fmt.Fprintf(w.f, "%s %s\n", time.Now().UTC().Format(time.RFC3339Nano), w.partial)
		w.partial = nil
	}
}

func (w *logWriter) Close() error { return w.f.Close() }

// serveKubeletAPI answers the API server's pods/log proxying:
// GET /containerLogs/{namespace}/{pod}/{container}?follow&tailLines&timestamps&sinceSeconds&sinceTime
func (a *agent) serveKubeletAPI(ctx context.Context) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/containerLogs/", a.containerLogs)
	cert, err := tls.LoadX509KeyPair(a.cfg.tlsCert, a.cfg.tlsKey)
	if err != nil {
		log.Printf("kubelet API disabled: %v", err)
		return
	}
	srv := &http.Server{
		Addr:      net.JoinHostPort(a.cfg.nodeIP.String(), strconv.Itoa(a.cfg.kubeletPort)),
		Handler:   mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServeTLS("", ""); err != nil && err != http.ErrServerClosed {
		log.Printf("kubelet API: %v", err)
	}
}

func (a *agent) containerLogs(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 {
		http.Error(w, "want /containerLogs/{namespace}/{pod}/{container}", http.StatusBadRequest)
		return
	}
	ns, name, container := parts[0], parts[1], parts[2]
	var path string
	a.mu.Lock()
	for _, p := range a.pods {
		if p.ns == ns && p.name == name {
			path = filepath.Join(p.dir, "logs", container+".log")
		}
	}
	a.mu.Unlock()
	if path == "" {
		http.Error(w, fmt.Sprintf("pod %s/%s is not running on this node", ns, name), http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	timestamps := q.Get("timestamps") == "true"
	follow := q.Get("follow") == "true"
	var since time.Time
	if s := q.Get("sinceSeconds"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			since = time.Now().Add(-time.Duration(n) * time.Second)
		}
	}
	if s := q.Get("sinceTime"); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			since = t
		}
	}
	tail := -1
	if s := q.Get("tailLines"); s != "" {
		tail, _ = strconv.Atoi(s)
	}
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain")
	emit := func(line string) {
		ts, rest, ok := strings.Cut(line, " ")
		if !ok {
			return
		}
		if !since.IsZero() {
			if t, err := time.Parse(time.RFC3339Nano, ts); err == nil && t.Before(since) {
				return
			}
		}
		if timestamps {
			io.WriteString(w, line)
		} else {
			io.WriteString(w, rest)
		}
	}
	reader := bufio.NewReader(f)
	var lines []string
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			break
		}
		lines = append(lines, line)
	}
	if tail >= 0 && tail < len(lines) {
		lines = lines[len(lines)-tail:]
	}
	for _, l := range lines {
		emit(l)
	}
	if !follow {
		return
	}
	flusher, _ := w.(http.Flusher)
	for {
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		for {
			line, err := reader.ReadString('\n')
			if err != nil {
				break
			}
			emit(line)
		}
	}
}
