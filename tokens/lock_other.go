//go:build !unix && !windows

package tokens

import (
	"errors"
	"os"
)

// tryLock fails: this platform has no advisory file locks that xoauthd uses.
func tryLock(*os.File) (bool, error) {
	return false, errors.New("file locking is not supported on this platform")
}

// unlock does nothing.
func unlock(*os.File) error { return nil }

// syncDir does nothing.
func syncDir(string) error { return nil }
