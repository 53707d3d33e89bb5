package deploy

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/xoauthd/xoauthd/config"
)

const replicasFile = "kubernetes/replicas-redis.yaml"

// The parts of a Service, a StatefulSet and a container's ports the
// replicas test looks at.
type (
	serviceSpec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string    `yaml:"name"`
			Port       int       `yaml:"port"`
			TargetPort yaml.Node `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	statefulSetSpec struct {
		Replicas int `yaml:"replicas"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []struct {
					Name    string   `yaml:"name"`
					Command []string `yaml:"command"`
					Args    []string `yaml:"args"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []any `yaml:"volumeClaimTemplates"`
	}
	podTemplate struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			Containers []struct {
				Name  string `yaml:"name"`
				Ports []struct {
					Name          string `yaml:"name"`
					ContainerPort int    `yaml:"containerPort"`
				} `yaml:"ports"`
			} `yaml:"containers"`
		} `yaml:"spec"`
	}
)

// replicas is the decoded replicas-redis.yaml.
type replicas struct {
	objects map[string]map[string]*k8sObject // kind, name
	s       *sidecar                         // the xoauthd Deployment, read like the sidecar's
	pod     podTemplate
}

// spec finds the object of kind and name, decodes its spec into out and
// returns it; without one it fails t with missing.
func (r *replicas) spec(t *testing.T, kind, name string, out any, missing string) *k8sObject {
	t.Helper()
	o := r.objects[kind][name]
	if o == nil {
		t.Fatal(missing)
	}
	if err := o.Spec.Decode(out); err != nil {
		t.Fatalf("%s %s: %v", kind, name, err)
	}
	return o
}

func readReplicas(t *testing.T) *replicas {
	t.Helper()
	r := &replicas{objects: map[string]map[string]*k8sObject{}, s: &sidecar{}}
	for _, doc := range yamlDocs(t, replicasFile) {
		var o k8sObject
		if err := doc.Decode(&o); err != nil {
			t.Fatalf("%s: %v", replicasFile, err)
		}
		if r.objects[o.Kind] == nil {
			r.objects[o.Kind] = map[string]*k8sObject{}
		}
		r.objects[o.Kind][o.Metadata.Name] = &o
	}
	d := r.objects["Deployment"]["xoauthd"]
	if d == nil {
		t.Fatalf("%s has no Deployment xoauthd", replicasFile)
	}
	var tmpl struct {
		Template podTemplate `yaml:"template"`
	}
	if err := d.Spec.Decode(&r.s.deploy); err != nil {
		t.Fatal(err)
	}
	if err := d.Spec.Decode(&tmpl); err != nil {
		t.Fatal(err)
	}
	r.pod = tmpl.Template
	for _, c := range r.s.deploy.Template.Spec.Containers {
		if c.Name == "xoauthd" {
			r.s.xoauthd = c
		}
	}
	if r.s.xoauthd.Name == "" {
		t.Fatalf("%s: the Deployment has no xoauthd container", replicasFile)
	}
	return r
}

// config returns the replicas' configuration, validated with stand-in
// secrets, and checks that its secrets come from a read-only Secret volume.
func (r *replicas) config(t *testing.T) *config.Config {
	t.Helper()
	v, subPath, _ := r.s.volume(t, r.s.xoauthd, path.Dir(imageConfig))
	if v.ConfigMap == nil || subPath != "" || len(v.ConfigMap.Items) != 0 {
		t.Fatalf("%s: want a whole ConfigMap mounted as a directory, got %+v subPath %q", path.Dir(imageConfig), v, subPath)
	}
	cm := r.objects["ConfigMap"][v.ConfigMap.Name]
	if cm == nil {
		t.Fatalf("ConfigMap %q is not in the file", v.ConfigMap.Name)
	}
	text := cm.Data[path.Base(imageConfig)]
	keyFile, ok := strings.CutPrefix(rawStoreKey(t, text), "${file:")
	if !ok {
		t.Fatal("store.key: want ${file:...} from the Secret volume")
	}
	secretDir := path.Dir(strings.TrimSuffix(keyFile, "}"))
	sv, _, readOnly := r.s.volume(t, r.s.xoauthd, secretDir)
	if sv.Secret == nil || !readOnly {
		t.Errorf("store key directory %s: want a read-only Secret volume, got %+v", secretDir, sv)
	}
	return validateWithSecrets(t, "ConfigMap "+cm.Metadata.Name, text, secretDir)
}

// TestKubernetesReplicasDeployment: several replicas that roll one at a
// time, with the same probes and hardening as the sidecar, and no token
// file of their own.
func TestKubernetesReplicasDeployment(t *testing.T) {
	r := readReplicas(t)
	if r.s.deploy.Replicas < 2 || r.s.deploy.Strategy.Type != "RollingUpdate" {
		t.Errorf("replicas %d, strategy %q: want several replicas rolling one at a time", r.s.deploy.Replicas, r.s.deploy.Strategy.Type)
	}
	pod := r.s.deploy.Template.Spec
	if grace := pod.TerminationGracePeriodSeconds; grace <= int(drainOf(t, r.s.xoauthd).Seconds()) {
		t.Errorf("terminationGracePeriodSeconds %d does not cover the drain", grace)
	}
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim != nil {
			t.Errorf("volume %s: replicas keep no token file; the tokens are in Redis", v.Name)
		}
	}
	sc := r.s.xoauthd.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
		*sc.AllowPrivilegeEscalation || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("xoauthd container: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL")
	}
	argv := append([]string{binary}, r.s.xoauthd.Args...)
	readCLI(t).check(t, "xoauthd args", argv)
	if argv[1] != "serve" {
		t.Errorf("xoauthd runs %q, want serve", argv)
	}
	if pdb := r.objects["PodDisruptionBudget"]["xoauthd"]; pdb == nil {
		t.Error("no PodDisruptionBudget keeps replicas up during node drains")
	}
	checkProbes(t, r.s, r.config(t).Admin.Listen)
}

// TestKubernetesReplicasStore: the configuration uses the redis backend,
// at the Redis Service of the file, with the password from the Secret; the
// Redis keeps its data on a volume and only xoauthd may reach it.
func TestKubernetesReplicasStore(t *testing.T) {
	r := readReplicas(t)
	cfg := r.config(t)
	if !cfg.Store.IsRedis() {
		t.Fatalf("store.backend %q, want redis", cfg.Store.Backend)
	}
	u, err := url.Parse(cfg.Store.Redis.URL)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Redis.Password.IsZero() {
		t.Error("store.redis.password is not set; the Redis asks for one")
	}
	var spec serviceSpec
	svc := r.spec(t, "Service", u.Hostname(), &spec,
		fmt.Sprintf("store.redis.url names host %s, but the file has no such Service", u.Hostname()))
	if len(spec.Ports) == 0 || strconv.Itoa(spec.Ports[0].Port) != u.Port() {
		t.Errorf("Service %s does not serve port %s of store.redis.url", svc.Metadata.Name, u.Port())
	}
	var ss statefulSetSpec
	r.spec(t, "StatefulSet", u.Hostname(), &ss, fmt.Sprintf("no StatefulSet %s runs the Redis", u.Hostname()))
	if !matches(spec.Selector, ss.Template.Metadata.Labels) {
		t.Errorf("Service %s does not select the Redis pods", svc.Metadata.Name)
	}
	if len(ss.VolumeClaimTemplates) == 0 || len(ss.Template.Spec.Containers) == 0 {
		t.Fatal("the Redis has no volume: a restart would lose every token")
	}
	cmd := strings.Join(append(ss.Template.Spec.Containers[0].Command, ss.Template.Spec.Containers[0].Args...), " ")
	for _, want := range []string{"redis-server", "--appendonly yes", "--requirepass"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("the Redis runs %q, which lacks %s", cmd, want)
		}
	}
	var policy struct {
		PodSelector labelSelector `yaml:"podSelector"`
		Ingress     []struct {
			From []struct {
				PodSelector *labelSelector `yaml:"podSelector"`
			} `yaml:"from"`
		} `yaml:"ingress"`
	}
	r.spec(t, "NetworkPolicy", u.Hostname(), &policy, "no NetworkPolicy limits who reaches the Redis")
	if !matches(policy.PodSelector.MatchLabels, ss.Template.Metadata.Labels) {
		t.Error("the NetworkPolicy does not apply to the Redis pods")
	}
	for _, in := range policy.Ingress {
		for _, from := range in.From {
			if from.PodSelector == nil || !matches(from.PodSelector.MatchLabels, r.pod.Metadata.Labels) {
				t.Errorf("the NetworkPolicy lets in more than the xoauthd pods: %+v", from)
			}
		}
	}
	if len(policy.Ingress) == 0 {
		t.Error("the NetworkPolicy lets nobody in, not even xoauthd")
	}
}

// labelSelector is a Kubernetes label selector (matchLabels only).
type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// TestKubernetesReplicasMailService: a Service sends the mail ports to the
// replicas' listeners, which take logins from other hosts only with TLS.
func TestKubernetesReplicasMailService(t *testing.T) {
	r := readReplicas(t)
	cfg := r.config(t)
	var spec serviceSpec
	r.spec(t, "Service", "xoauthd-mail", &spec, "no Service xoauthd-mail for the mail ports")
	if !matches(spec.Selector, r.pod.Metadata.Labels) {
		t.Error("Service xoauthd-mail does not select the xoauthd pods")
	}
	containerPorts := map[string]int{}
	for _, c := range r.pod.Spec.Containers {
		for _, p := range c.Ports {
			containerPorts[p.Name] = p.ContainerPort
		}
	}
	served := map[string]bool{}
	for _, p := range spec.Ports {
		port, err := strconv.Atoi(p.TargetPort.Value)
		if err != nil {
			port = containerPorts[p.TargetPort.Value]
		}
		served[strconv.Itoa(port)] = true
	}
	for _, srv := range cfg.Servers {
		if !served[portOf(t, srv.Listen)] {
			t.Errorf("the %s listener %s is not behind Service xoauthd-mail", srv.Protocol, srv.Listen)
		}
		if isLoopback(srv.Listen) {
			t.Errorf("the %s listener %s is on loopback, out of the Service's reach", srv.Protocol, srv.Listen)
		}
		if srv.TLS == nil || srv.AllowPlaintext {
			t.Errorf("the %s listener takes passwords from the network without TLS", srv.Protocol)
		}
	}
	if len(cfg.Servers) == 0 {
		t.Fatal("no servers configured")
	}
}

// matches reports whether labels carry every entry of selector.
func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
