package testupstream

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := confParams{
		Dir: dir, IMAPPort: 1993, POP3Port: 1995, SubPort: 1587, SinkPort: 1025,
		CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem"),
		UID: 65534, GID: 65534,
	}
	key := []byte("raw\x00key\xffbytes")
	if err := writeConfig(p, key); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, confFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"base_dir = " + dir + "/run\n",
		"port = 1993\n", "port = 1995\n", "port = 1587\n",
		"submission_relay_port = 1025\n",
		"ssl_key = <" + p.KeyFile + "\n",
		"mail_location = maildir:" + dir + "/mail/%u\n",
	} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("dovecot.conf lacks %q", want)
		}
	}
	oauth, err := os.ReadFile(filepath.Join(dir, oauthFileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(conf), "mail_max_userip_connections") {
		t.Error("dovecot.conf sets mail_max_userip_connections without MaxUserIPConnections")
	}
	p.MaxUserIPConnections = 200
	if err := writeConfig(p, key); err != nil {
		t.Fatal(err)
	}
	if conf, _ := os.ReadFile(filepath.Join(dir, confFileName)); !strings.Contains(string(conf), "\nmail_max_userip_connections = 200\n") {
		t.Error("dovecot.conf lacks mail_max_userip_connections = 200")
	}
	if !strings.Contains(string(oauth), "prefix="+dir+"/keys/\n") {
		t.Errorf("oauth2 config = %q, want the key dict under %s/keys", oauth, dir)
	}
	stored, err := os.ReadFile(filepath.Join(dir, "keys", "default", "HS256", "default"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(string(stored))
	if err != nil || string(raw) != string(key) {
		t.Errorf("key file = %q, want base64 of the raw key", stored)
	}
}

func TestWriteConfigRejectsUnsafePaths(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"/tmp/with space", "/tmp/quote\"d", "/tmp/hash#x", "/tmp/new\nline", "/tmp/br{ace}"} {
		p := confParams{Dir: dir, CertFile: "/c", KeyFile: "/k"}
		if err := writeConfig(p, []byte("k")); err == nil {
			t.Errorf("writeConfig accepted dir %q", dir)
		}
	}
}
