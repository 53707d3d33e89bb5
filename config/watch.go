package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watching.
const (
	// DefaultDebounce is how long Watch waits after the last change before
	// it reads the file, so that an editor's or a ConfigMap's several steps
	// become one reload.
	DefaultDebounce = 200 * time.Millisecond
	// maxDebounceRounds bounds the wait while changes keep coming: a reload
	// happens at most this many debounce periods after the first change.
	maxDebounceRounds = 10
	// maxSymlinkHops bounds how many symbolic links Watch follows from the
	// configuration file to the file it reads.
	maxSymlinkHops = 40
)

// Watcher reloads a configuration file when it changes. Watch starts one;
// Close stops it.
type Watcher struct {
	path     string // as given: what Load reads and Config.Path says
	abs      string // absolute and clean: what the watch set starts from
	debounce time.Duration
	onChange func(*Config, error)
	fw       *fsnotify.Watcher
	cancel   context.CancelFunc
	done     chan struct{} // closed when run returns

	// Only run touches these after Watch returns.
	dirs  map[string]bool // watched directories (their real paths)
	names map[string]bool // entries whose change may change what path reads
}

// Watch watches the configuration file at path and, debounce after the last
// change of it (DefaultDebounce when <= 0), loads it again and calls
// onChange with the new Config, or with the error (Problems for a file that
// does not validate). Calls come one at a time from one goroutine.
//
// It watches directories, not the file: editors save by writing a new file
// and renaming it over the old one, and a Kubernetes ConfigMap volume swaps
// a "..data" symbolic link to a new timestamped directory. The directory of
// path is watched, and so is the directory of every link on the way from
// path to the file it names (and every linked parent directory such as
// ..data); events for other entries in those directories are ignored. After
// each change the watch set follows the links again.
//
// Watching stops when ctx is done or Close is called. Errors of the
// notification system other than a lost-events overflow (which only causes
// a reload) are passed to onChange with a nil Config.
func Watch(ctx context.Context, path string, debounce time.Duration, onChange func(*Config, error)) (*Watcher, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("watching configuration %s: %w", path, err)
	}
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching configuration %s: %w (hint: raise fs.inotify.max_user_instances, or reload with SIGHUP)", path, err)
	}
	w := &Watcher{path: path, abs: abs, debounce: debounce, onChange: onChange, fw: fw,
		done: make(chan struct{}), dirs: map[string]bool{}}
	dirs, names := watchSet(abs)
	for dir := range dirs {
		if err := fw.Add(dir); err != nil {
			fw.Close()
			return nil, fmt.Errorf("watching configuration directory %s: %w", dir, err)
		}
		w.dirs[dir] = true
	}
	w.names = names
	ctx, w.cancel = context.WithCancel(ctx)
	go w.run(ctx)
	return w, nil
}

// Close stops watching and waits until a reload in progress has returned.
func (w *Watcher) Close() error {
	w.cancel()
	<-w.done
	return nil
}

// run handles events until ctx is done.
func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	defer w.fw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var first time.Time // of the first change not loaded yet; zero: none pending
	schedule := func() {
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		timer.Reset(min(w.debounce, first.Add(maxDebounceRounds*w.debounce).Sub(now)))
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if w.relevant(ev) {
				schedule()
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				schedule() // events were lost: read the file again
				continue
			}
			w.onChange(nil, fmt.Errorf("watching configuration %s: %w (changes may be missed; send SIGHUP to reload)", w.path, err))
		case <-timer.C:
			first = time.Time{}
			w.rewatch()
			cfg, err := Load(w.path)
			w.onChange(cfg, err)
		}
	}
}

// relevant reports whether ev may have changed what the file reads.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	return w.names[filepath.Clean(ev.Name)]
}

// rewatch follows the links again and moves the watches to where they lead
// now. A directory that cannot be watched (it does not exist yet) is tried
// again at the next change.
func (w *Watcher) rewatch() {
	dirs, names := watchSet(w.abs)
	for dir := range w.dirs {
		if !dirs[dir] {
			_ = w.fw.Remove(dir) // fails when the directory is gone, which removed the watch
			delete(w.dirs, dir)
		}
	}
	for dir := range dirs {
		if !w.dirs[dir] && w.fw.Add(dir) == nil {
			w.dirs[dir] = true
		}
	}
	w.names = names
}

// watchSet returns the directories to watch for the file at path (absolute)
// and the entries in them whose change may change what path reads: path
// itself, every symbolic link it leads through, a linked parent directory
// of each (ConfigMap's ..data), and the file finally read. Directories and
// entries are named by their real directory, as events name them.
func watchSet(path string) (dirs, names map[string]bool) {
	dirs, names = map[string]bool{}, map[string]bool{}
	add := func(p string) {
		dir := filepath.Dir(p)
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		dirs[dir] = true
		names[filepath.Join(dir, filepath.Base(p))] = true
	}
	p := path
	for range maxSymlinkHops {
		add(p)
		if isSymlink(filepath.Dir(p)) {
			add(filepath.Dir(p))
		}
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		add(real)
	}
	return dirs, names
}

// isSymlink reports whether p is a symbolic link.
func isSymlink(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}
