package timeservice_test

import (
	"os"
	"syscall"
)

func osStat(path string) (os.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Mode().Perm(), nil
}

// makeStaleSocket leaves a socket file that nobody accepts on, as a crashed
// server would.
func makeStaleSocket(path string) error {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	_ = os.Remove(path)
	return syscall.Bind(fd, &syscall.SockaddrUnix{Name: path})
}
