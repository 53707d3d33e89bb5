//go:build !unix

package e2e

import "errors"

// setFileLimit cannot raise the open-file limit on this platform.
func setFileLimit(uint64) error { return errors.New("no open-file limit to raise on this platform") }
