package deploy

import (
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The parts of Kubernetes objects the tests look at (yaml.v3 needs the
// camelCase names spelled out).
type (
	k8sObject struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Data map[string]string `yaml:"data"`
		Spec yaml.Node         `yaml:"spec"`
	}
	deploymentSpec struct {
		Replicas int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	}
	podSpec struct {
		TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               struct {
			RunAsNonRoot *bool `yaml:"runAsNonRoot"`
			RunAsUser    *int  `yaml:"runAsUser"`
			FSGroup      *int  `yaml:"fsGroup"`
		} `yaml:"securityContext"`
		InitContainers []k8sContainer `yaml:"initContainers"`
		Containers     []k8sContainer `yaml:"containers"`
		Volumes        []k8sVolume    `yaml:"volumes"`
	}
	k8sContainer struct {
		Name          string   `yaml:"name"`
		Image         string   `yaml:"image"`
		Command       []string `yaml:"command"`
		Args          []string `yaml:"args"`
		RestartPolicy string   `yaml:"restartPolicy"`
		Env           []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				SecretKeyRef *struct {
					Name string `yaml:"name"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		StartupProbe    *k8sProbe `yaml:"startupProbe"`
		LivenessProbe   *k8sProbe `yaml:"livenessProbe"`
		ReadinessProbe  *k8sProbe `yaml:"readinessProbe"`
		SecurityContext *struct {
			RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
			Privileged               *bool `yaml:"privileged"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			SubPath   string `yaml:"subPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	k8sProbe struct {
		Exec *struct {
			Command []string `yaml:"command"`
		} `yaml:"exec"`
		HTTPGet *struct {
			Path string    `yaml:"path"`
			Port yaml.Node `yaml:"port"`
		} `yaml:"httpGet"`
	}
	k8sVolume struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name  string `yaml:"name"`
			Items []any  `yaml:"items"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []any  `yaml:"items"`
		} `yaml:"secret"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
	}
)

// sidecar is the decoded deploy/kubernetes/sidecar.yaml.
type sidecar struct {
	objects map[string]map[string]*k8sObject // kind, name
	deploy  deploymentSpec
	xoauthd k8sContainer
	isInit  bool // xoauthd is an init container (native sidecar)
	app     []k8sContainer
}

func readSidecar(t *testing.T) *sidecar {
	t.Helper()
	const name = "kubernetes/sidecar.yaml"
	s := &sidecar{objects: map[string]map[string]*k8sObject{}}
	var deployments int
	for _, doc := range yamlDocs(t, name) {
		var o k8sObject
		if err := doc.Decode(&o); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.objects[o.Kind] == nil {
			s.objects[o.Kind] = map[string]*k8sObject{}
		}
		s.objects[o.Kind][o.Metadata.Name] = &o
		if o.Kind == "Deployment" {
			deployments++
			if err := o.Spec.Decode(&s.deploy); err != nil {
				t.Fatalf("%s: Deployment %s: %v", name, o.Metadata.Name, err)
			}
		}
	}
	if deployments != 1 {
		t.Fatalf("%s has %d Deployments, want 1", name, deployments)
	}
	pod := s.deploy.Template.Spec
	found := 0
	for _, c := range pod.InitContainers {
		if c.Name == "xoauthd" {
			s.xoauthd, s.isInit, found = c, true, found+1
		}
	}
	for _, c := range pod.Containers {
		if c.Name == "xoauthd" {
			s.xoauthd, found = c, found+1
		} else {
			s.app = append(s.app, c)
		}
	}
	if found != 1 || len(s.app) == 0 {
		t.Fatalf("%s: want one xoauthd container and an application container; found %d xoauthd, %d others", name, found, len(s.app))
	}
	return s
}

// volume returns the pod volume mounted at mountPath in c, with the mount's
// subPath and readOnly.
func (s *sidecar) volume(t *testing.T, c k8sContainer, mountPath string) (v k8sVolume, subPath string, readOnly bool) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != mountPath {
			continue
		}
		for _, v := range s.deploy.Template.Spec.Volumes {
			if v.Name == m.Name {
				return v, m.SubPath, m.ReadOnly
			}
		}
		t.Fatalf("mount %s names volume %q, which the pod does not have", mountPath, m.Name)
	}
	t.Fatalf("container %s mounts nothing at %s", c.Name, mountPath)
	return k8sVolume{}, "", false
}

// env returns the value of a plain environment variable of c.
func (c k8sContainer) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
	}
	return "", false
}

func TestKubernetesDeployment(t *testing.T) {
	s := readSidecar(t)
	if s.deploy.Replicas != 1 || s.deploy.Strategy.Type != "Recreate" {
		t.Errorf("replicas %d, strategy %q: one pod at a time owns the token store (1, Recreate)", s.deploy.Replicas, s.deploy.Strategy.Type)
	}
	pod := s.deploy.Template.Spec
	if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.FSGroup == nil {
		t.Errorf("pod securityContext: want runAsNonRoot: true and an fsGroup for the volumes")
	}
	if s.isInit && s.xoauthd.RestartPolicy != "Always" {
		t.Errorf("xoauthd is an init container with restartPolicy %q: a native sidecar needs Always", s.xoauthd.RestartPolicy)
	}
	if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace < drainOf(t, s.xoauthd)+stopMargin {
		t.Errorf("terminationGracePeriodSeconds %v does not cover the drain %v and %v", grace, drainOf(t, s.xoauthd), stopMargin)
	}
	img := s.xoauthd.Image
	if !strings.Contains(img, "xoauthd:") || strings.HasSuffix(img, ":latest") {
		t.Errorf("xoauthd image %q: want an xoauthd image with a fixed tag", img)
	}
	for _, c := range append([]k8sContainer{s.xoauthd}, s.app...) {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("container %s has no securityContext", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem,
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation,
			sc.Privileged != nil && *sc.Privileged,
			!slices.Contains(sc.Capabilities.Drop, "ALL"):
			t.Errorf("container %s: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL", c.Name)
		}
	}
	c := readCLI(t)
	argv := append([]string{binary}, s.xoauthd.Args...)
	if len(s.xoauthd.Command) > 0 {
		argv = append(slices.Clone(s.xoauthd.Command), s.xoauthd.Args...)
	}
	c.check(t, "xoauthd args", argv)
	if argv[1] != "serve" {
		t.Errorf("xoauthd runs %q, want serve", argv)
	}
}

// drainOf returns the container's --drain, or serve's default.
func drainOf(t *testing.T, c k8sContainer) time.Duration {
	t.Helper()
	v, ok := flagValue(c.Args, "drain")
	if !ok {
		return defaultDrain
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Errorf("--drain %q: %v", v, err)
	}
	return d
}

func TestKubernetesConfigAndVolumes(t *testing.T) {
	s := readSidecar(t)
	cfgPath, ok := s.xoauthd.env("XOAUTHD_CONFIG")
	if !ok {
		cfgPath = imageConfig
	}
	// The configuration: a whole ConfigMap mounted as a directory, so its
	// ..data symlink swap reaches the watcher; subPath mounts never update.
	v, subPath, _ := s.volume(t, s.xoauthd, path.Dir(cfgPath))
	if v.ConfigMap == nil || subPath != "" || len(v.ConfigMap.Items) != 0 {
		t.Fatalf("%s: want a whole ConfigMap mounted as a directory (no subPath, no items), got %+v subPath %q", path.Dir(cfgPath), v, subPath)
	}
	cm := s.objects["ConfigMap"][v.ConfigMap.Name]
	if cm == nil {
		t.Fatalf("ConfigMap %q is not in the file", v.ConfigMap.Name)
	}
	text, ok := cm.Data[path.Base(cfgPath)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm.Metadata.Name, path.Base(cfgPath))
	}

	// The key: a file from a Secret volume.
	keyRef := rawStoreKey(t, text)
	keyFile, ok := strings.CutPrefix(keyRef, "${file:")
	if !ok {
		t.Fatalf("store.key %q: want ${file:...} from the Secret volume", keyRef)
	}
	secretDir := path.Dir(strings.TrimSuffix(keyFile, "}"))
	sv, subPath, readOnly := s.volume(t, s.xoauthd, secretDir)
	if sv.Secret == nil || subPath != "" || !readOnly {
		t.Errorf("store key directory %s: want a read-only Secret volume, got %+v", secretDir, sv)
	}

	cfg := validateWithSecrets(t, "ConfigMap "+cm.Metadata.Name, text, secretDir)

	// The store: on the PersistentVolumeClaim of this file.
	pv, _, readOnly := s.volume(t, s.xoauthd, path.Dir(cfg.Store.Path))
	if pv.PersistentVolumeClaim == nil || readOnly {
		t.Errorf("store.path %s: want a writable PersistentVolumeClaim mount, got %+v", cfg.Store.Path, pv)
	} else if s.objects["PersistentVolumeClaim"][pv.PersistentVolumeClaim.ClaimName] == nil {
		t.Errorf("PersistentVolumeClaim %q is not in the file", pv.PersistentVolumeClaim.ClaimName)
	}

	// Everything listens inside the pod only.
	for _, srv := range cfg.Servers {
		if !isLoopback(srv.Listen) {
			t.Errorf("server %s listens on %s: a sidecar listens on 127.0.0.1", srv.Protocol, srv.Listen)
		}
	}
	checkProbes(t, s, cfg.Admin.Listen)
}

// checkProbes checks that readiness asks /readyz and liveness /healthz of
// the configured admin endpoint, in a way the kubelet can reach.
func checkProbes(t *testing.T, s *sidecar, adminListen string) {
	t.Helper()
	if adminListen == "" {
		t.Fatal("admin.listen is not set: the probes have nothing to ask")
	}
	c := readCLI(t)
	probes := []struct {
		name     string
		p        *k8sProbe
		endpoint string
		required bool
	}{
		{"readinessProbe", s.xoauthd.ReadinessProbe, "/readyz", true},
		{"livenessProbe", s.xoauthd.LivenessProbe, "/healthz", true},
		{"startupProbe", s.xoauthd.StartupProbe, "/healthz", false},
	}
	for _, pr := range probes {
		switch {
		case pr.p == nil:
			if pr.required {
				t.Errorf("xoauthd has no %s", pr.name)
			}
		case pr.p.Exec != nil:
			argv := pr.p.Exec.Command
			c.check(t, pr.name, argv)
			if len(argv) < 2 || argv[0] != binary || argv[1] != "health" {
				t.Errorf("%s runs %q, want %s health", pr.name, argv, binary)
				continue
			}
			endpoint := "/healthz"
			if slices.Contains(argv, "--ready") {
				endpoint = "/readyz"
			}
			if endpoint != pr.endpoint {
				t.Errorf("%s asks %s, want %s", pr.name, endpoint, pr.endpoint)
			}
			if url, ok := flagValue(argv, "url"); ok && portOf(t, url) != portOf(t, adminListen) {
				t.Errorf("%s asks %s, but admin.listen is %s", pr.name, url, adminListen)
			}
		case pr.p.HTTPGet != nil:
			if pr.p.HTTPGet.Path != pr.endpoint {
				t.Errorf("%s GETs %s, want %s", pr.name, pr.p.HTTPGet.Path, pr.endpoint)
			}
			if port := pr.p.HTTPGet.Port.Value; port != portOf(t, adminListen) {
				t.Errorf("%s GETs port %s, but admin.listen is %s", pr.name, port, adminListen)
			}
			if isLoopback(adminListen) {
				t.Errorf("%s: the kubelet cannot reach admin.listen %s on loopback; use an exec probe (xoauthd health) or listen on 0.0.0.0", pr.name, adminListen)
			}
		default:
			t.Errorf("%s: want exec (xoauthd health) or httpGet", pr.name)
		}
	}
	if _, err := strconv.Atoi(portOf(t, adminListen)); err != nil {
		t.Errorf("admin.listen %q has no numeric port", adminListen)
	}
}
