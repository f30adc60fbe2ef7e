package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// execContainer is run as `ip netns exec POD nodeagent exec-container [--mount SRC=DST]...
// [--workdir DIR] -- CMD ARGS...`: already inside the pod's network namespace and a fresh
// mount namespace (ip netns exec makes one), it bind-mounts the pod's volumes at their
// mountPaths, private to this process, then becomes the container's command.
func execContainer(args []string) {
	var mounts [][2]string
	workdir := ""
	i := 0
	for ; i < len(args); i++ {
		switch args[i] {
		case "--mount":
			i++
			src, dst, ok := strings.Cut(args[i], "=")
			if !ok {
				fail("bad --mount %q", args[i])
			}
			mounts = append(mounts, [2]string{src, dst})
		case "--workdir":
			i++
			workdir = args[i]
		case "--":
			i++
			goto done
		default:
			fail("unknown argument %q", args[i])
		}
	}
done:
	cmd := args[i:]
	if len(cmd) == 0 {
		fail("no command")
	}
	// Open the program before mounting: a volume mounted over one of its parent directories
	// (CoreDNS mounts its ConfigMap at /root) would hide it.
	path, err := exec.LookPath(cmd[0])
	if err != nil {
		fail("command %s: %v", cmd[0], err)
	}
	program, err := os.Open(path)
	if err != nil {
		fail("command %s: %v", path, err)
	}
	// Keep our mounts from propagating back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fail("make / private: %v", err)
	}
	for _, m := range mounts {
		if err := bindMount(m[0], m[1]); err != nil {
			fail("mount %s at %s: %v", m[0], m[1], err)
		}
	}
	if workdir != "" {
		if err := os.Chdir(workdir); err != nil {
			fail("workdir %s: %v", workdir, err)
		}
	}
	fd := fmt.Sprintf("/proc/self/fd/%d", program.Fd())
	if err := syscall.Exec(fd, cmd, os.Environ()); err != nil {
		fail("exec %s: %v", path, err)
	}
}

func bindMount(src, dst string) error {
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	// The mount point must exist; directories made for it stay (documented limit).
	if info.IsDir() {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(dirOf(dst), 0o755); err != nil {
			return err
		}
		if _, err := os.Stat(dst); os.IsNotExist(err) {
			f, err := os.Create(dst)
			if err != nil {
				return err
			}
			f.Close()
		}
	}
	return unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, "")
}

func dirOf(p string) string {
	if i := strings.LastIndex(p, "/"); i > 0 {
		return p[:i]
	}
	return "/"
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "exec-container: "+format+"\n", a...)
	os.Exit(127)
}
