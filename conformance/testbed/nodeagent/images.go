package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// images maps an image repository (no tag, no digest) to a local binary.
type images map[string]string

// loadImages reads lines of "repository binary-path"; '#' starts a comment.
func loadImages(path string) (images, error) {
	table := images{}
	if path == "" {
		return table, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	scan := bufio.NewScanner(f)
	for n := 1; scan.Scan(); n++ {
		line := strings.TrimSpace(strings.SplitN(scan.Text(), "#", 2)[0])
		if line == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want 'repository binary-path'", path, n)
		}
		table[fields[0]] = fields[1]
	}
	return table, scan.Err()
}

// repository strips the tag and digest: "registry.k8s.io/x/y:v1@sha256:..." -> "registry.k8s.io/x/y".
func repository(image string) string {
	image = strings.SplitN(image, "@", 2)[0]
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		image = image[:colon]
	}
	return image
}

// binary resolves an image to its local binary, or says why it cannot.
func (t images) binary(image string) (string, error) {
	repo := repository(image)
	path, ok := t[repo]
	if !ok {
		return "", fmt.Errorf("image %q: repository %q is not in the testbed's image table (docs/testbed.md says how to add one)", image, repo)
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("image %q maps to %s, which is not built: %v", image, path, err)
	}
	return path, nil
}
