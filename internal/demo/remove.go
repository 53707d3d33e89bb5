package demo

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
)

// removeTree removes dir and everything in it with removeAll (os.RemoveAll),
// and when that fails, file by file with remove (os.Remove), deepest first.
//
// The fallback is for Wine: Go's os.RemoveAll on Windows deletes through
// NtSetInformationFile(FileDispositionInformationEx), which Wine 8 answers
// with STATUS_NOT_IMPLEMENTED ("Invalid function"), a status Go does not
// fall back on; os.Remove uses DeleteFileW and RemoveDirectoryW, which Wine
// has. On Windows and Unix removeAll succeeds and the fallback never runs.
func removeTree(dir string, removeAll, remove func(string) error) error {
	first := removeAll(dir)
	if first == nil {
		return nil
	}
	var paths []string
	walkErr := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, path)
		return nil
	})
	if errors.Is(walkErr, fs.ErrNotExist) && len(paths) == 0 {
		return nil // removeAll removed it after all
	}
	var errs []error
	if walkErr != nil {
		errs = append(errs, walkErr)
	}
	// WalkDir lists a directory before its entries: reversed, every entry
	// comes before its directory.
	for _, path := range slices.Backward(paths) {
		if err := remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w (removing file by file: %w)", first, errors.Join(errs...))
	}
	return nil
}
