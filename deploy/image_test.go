package deploy

import (
	"encoding/json"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
)

// Environment of the image tests, set by the CI stage that builds the image
// (.ci/container.sh); without XOAUTHD_IMAGE_INSPECT they are skipped.
const (
	// envInspect names a file holding `podman image inspect` (or `docker
	// image inspect`) output of the image built from the Dockerfile.
	envInspect = "XOAUTHD_IMAGE_INSPECT"
	// envVersion is the VERSION build argument the image was built with.
	envVersion = "XOAUTHD_IMAGE_VERSION"
)

// Bounds the image must keep.
const (
	// maxImageSize bounds the image: one static binary and CA certificates.
	maxImageSize = 40 << 20
	// healthTimeout is xoauthd health's own default --timeout; the
	// HEALTHCHECK timeout must exceed it so that health reports the reason.
	healthTimeout = 5 * time.Second
)

// imageInspect is the part of `image inspect` output the tests look at.
type imageInspect struct {
	Os, Architecture string
	Size             int64
	Config           struct {
		User         string
		ExposedPorts map[string]struct{}
		Env          []string
		Entrypoint   []string
		Cmd          []string
		Volumes      map[string]struct{}
		WorkingDir   string
		Labels       map[string]string
		StopSignal   string
		// Docker puts the health check here.
		Healthcheck *imageHealthcheck
	}
	// Podman puts it here.
	Healthcheck *imageHealthcheck
}

type imageHealthcheck struct {
	Test                           []string
	Interval, Timeout, StartPeriod time.Duration
	Retries                        int
}

// readImage decodes the inspected image, or skips the test when the CI
// stage did not provide one.
func readImage(t *testing.T) *imageInspect {
	t.Helper()
	name := os.Getenv(envInspect)
	if name == "" {
		t.Skipf("%s is not set: the image was not built here (.ci/container.sh builds it and runs these tests)", envInspect)
	}
	var images []imageInspect
	if err := json.Unmarshal(readFile(t, name), &images); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(images) != 1 {
		t.Fatalf("%s describes %d images, want 1", name, len(images))
	}
	img := &images[0]
	if img.Healthcheck == nil {
		img.Healthcheck = img.Config.Healthcheck
	}
	return img
}

// env returns the value of an environment variable of the image.
func (img *imageInspect) env(name string) string {
	for _, kv := range img.Config.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// ports returns the exposed TCP ports.
func (img *imageInspect) ports() []string {
	var ports []string
	for p := range img.Config.ExposedPorts {
		ports = append(ports, strings.TrimSuffix(p, "/tcp"))
	}
	slices.Sort(ports)
	return ports
}

// uidGID splits the image's USER into numeric user and group ids.
func (img *imageInspect) uidGID(t *testing.T) (uid, gid int) {
	t.Helper()
	u, g, _ := strings.Cut(img.Config.User, ":")
	var err1, err2 error
	uid, err1 = strconv.Atoi(u)
	gid, err2 = strconv.Atoi(g)
	if err1 != nil || err2 != nil {
		t.Fatalf("image USER %q: want numeric uid:gid (a runAsNonRoot check needs a number)", img.Config.User)
	}
	return uid, gid
}

// listenPorts returns the ports of a configuration's servers.
func listenPorts(t *testing.T, cfg *config.Config) []string {
	t.Helper()
	var ports []string
	for _, s := range cfg.Servers {
		_, port, err := net.SplitHostPort(s.Listen)
		if err != nil {
			t.Fatalf("server %s listen %q: %v", s.Protocol, s.Listen, err)
		}
		ports = append(ports, port)
	}
	slices.Sort(ports)
	return ports
}

func TestImageMetadata(t *testing.T) {
	img := readImage(t)
	if uid, gid := img.uidGID(t); uid != 65532 || gid != 65532 {
		t.Errorf("USER %s, want 65532:65532 (distroless nonroot)", img.Config.User)
	}
	if !slices.Equal(img.Config.Entrypoint, []string{binary}) || !slices.Equal(img.Config.Cmd, []string{"serve"}) {
		t.Errorf("ENTRYPOINT %q CMD %q, want [%s] [serve]", img.Config.Entrypoint, img.Config.Cmd, binary)
	}
	hc := img.Healthcheck
	switch {
	case hc == nil:
		t.Error("no HEALTHCHECK (an OCI-format build drops it: build with --format docker)")
	case !slices.Equal(hc.Test, []string{"CMD", binary, "health"}):
		t.Errorf("HEALTHCHECK %q, want [CMD %s health]", hc.Test, binary)
	case hc.Timeout <= healthTimeout || hc.Interval <= 0 || hc.Retries < 1:
		t.Errorf("HEALTHCHECK interval %v timeout %v retries %d: want a timeout above health's own %v", hc.Interval, hc.Timeout, hc.Retries, healthTimeout)
	}
	if got := img.env("XOAUTHD_CONFIG"); got != imageConfig {
		t.Errorf("XOAUTHD_CONFIG=%q, want %s", got, imageConfig)
	}
	if _, ok := img.Config.Volumes[stateDir]; !ok || img.Config.WorkingDir != stateDir {
		t.Errorf("VOLUME %v WORKDIR %q: want %s for both", slices.Collect(maps.Keys(img.Config.Volumes)), img.Config.WorkingDir, stateDir)
	}
	if got := img.ports(); !slices.Equal(got, []string{"1110", "1143", "1587"}) {
		t.Errorf("EXPOSE %q, want the default ports 1110 1143 1587", got)
	}
	if img.Config.StopSignal != "SIGTERM" {
		t.Errorf("STOPSIGNAL %q, want SIGTERM (serve drains on it)", img.Config.StopSignal)
	}
	if img.Os != "linux" || img.Size <= 0 || img.Size > maxImageSize {
		t.Errorf("os %s, size %d bytes: want linux, at most %d bytes", img.Os, img.Size, maxImageSize)
	}
	labels := img.Config.Labels
	for _, k := range []string{"title", "description", "source", "version", "revision"} {
		if labels["org.opencontainers.image."+k] == "" {
			t.Errorf("label org.opencontainers.image.%s is missing", k)
		}
	}
	if labels["org.opencontainers.image.title"] != "xoauthd" {
		t.Errorf("title label %q", labels["org.opencontainers.image.title"])
	}
	if want := os.Getenv(envVersion); want != "" && labels["org.opencontainers.image.version"] != want {
		t.Errorf("version label %q, want the build argument %q", labels["org.opencontainers.image.version"], want)
	}
}

func TestImageMatchesCompose(t *testing.T) {
	img := readImage(t)
	x := readCompose(t).Services["xoauthd"]
	if x.User != img.Config.User {
		t.Errorf("compose user %q, image USER %q", x.User, img.Config.User)
	}
	if x.Healthcheck == nil || img.Healthcheck == nil || !slices.Equal(x.Healthcheck.Test, img.Healthcheck.Test) {
		t.Errorf("compose healthcheck %+v differs from the image's %+v", x.Healthcheck, img.Healthcheck)
	}
	cfgPath := img.env("XOAUTHD_CONFIG")
	if v, ok := x.Environment["XOAUTHD_CONFIG"]; ok && v != cfgPath {
		t.Errorf("compose XOAUTHD_CONFIG %q, image %q", v, cfgPath)
	}
	var cfgSrc string
	var stateMounted bool
	for _, v := range x.Volumes {
		src, target, _ := strings.Cut(v, ":")
		target, _, _ = strings.Cut(target, ":")
		switch target {
		case path.Dir(cfgPath):
			cfgSrc = src
		case stateDir:
			_, stateMounted = img.Config.Volumes[target]
		}
	}
	if cfgSrc == "" || !stateMounted {
		t.Fatalf("compose volumes %q: want the image's configuration directory %s and its VOLUME %s", x.Volumes, path.Dir(cfgPath), stateDir)
	}
	text := string(readFile(t, filepath.Join(cfgSrc, path.Base(cfgPath))))
	cfg := validateWithSecrets(t, cfgSrc, text, composeSecretsDir)
	if got, want := listenPorts(t, cfg), img.ports(); !slices.Equal(got, want) {
		t.Errorf("compose configuration listens on ports %q, the image exposes %q", got, want)
	}
}

func TestImageMatchesKubernetes(t *testing.T) {
	img := readImage(t)
	s := readSidecar(t)
	uid, gid := img.uidGID(t)
	sc := s.deploy.Template.Spec.SecurityContext
	if sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.FSGroup == nil || *sc.FSGroup != gid {
		t.Errorf("pod runAsUser %s fsGroup %s, image USER %s", deref(sc.RunAsUser), deref(sc.FSGroup), img.Config.User)
	}
	if s.xoauthd.Command != nil && !slices.Equal(s.xoauthd.Command, img.Config.Entrypoint) {
		t.Errorf("command %q replaces the image's ENTRYPOINT %q", s.xoauthd.Command, img.Config.Entrypoint)
	}
	for name, p := range map[string]*k8sProbe{"startupProbe": s.xoauthd.StartupProbe,
		"livenessProbe": s.xoauthd.LivenessProbe, "readinessProbe": s.xoauthd.ReadinessProbe} {
		if p == nil || p.Exec == nil {
			continue
		}
		if hc := img.Healthcheck; hc == nil || len(p.Exec.Command) < 2 || !slices.Equal(p.Exec.Command[:2], hc.Test[1:3]) {
			t.Errorf("%s runs %q, not the image's health check command", name, p.Exec.Command)
		}
	}
	cfgPath := img.env("XOAUTHD_CONFIG")
	if v, ok := s.xoauthd.env("XOAUTHD_CONFIG"); ok && v != cfgPath {
		t.Errorf("XOAUTHD_CONFIG %q, image %q", v, cfgPath)
	}
	v, _, _ := s.volume(t, s.xoauthd, path.Dir(cfgPath))
	if v.ConfigMap == nil || s.objects["ConfigMap"][v.ConfigMap.Name] == nil {
		t.Fatalf("the image's configuration directory %s is not a ConfigMap of the file", path.Dir(cfgPath))
	}
	if state, _, readOnly := s.volume(t, s.xoauthd, stateDir); state.PersistentVolumeClaim == nil || readOnly {
		t.Errorf("the image's VOLUME %s is not a writable PersistentVolumeClaim", stateDir)
	}
	text := s.objects["ConfigMap"][v.ConfigMap.Name].Data[path.Base(cfgPath)]
	keyFile := strings.TrimSuffix(strings.TrimPrefix(rawStoreKey(t, text), "${file:"), "}")
	cfg := validateWithSecrets(t, "ConfigMap "+v.ConfigMap.Name, text, path.Dir(keyFile))
	for _, port := range listenPorts(t, cfg) {
		if !slices.Contains(img.ports(), port) {
			t.Errorf("the ConfigMap listens on port %s, which the image does not expose (%q)", port, img.ports())
		}
	}
}

// deref formats an optional number of a manifest.
func deref(p *int) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(*p)
}
