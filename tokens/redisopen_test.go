package tokens

import (
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testredis"
)

// TestRedisACLUser: an ACL user limited to the prefix's keys and channels
// is all xoauthd needs; a wrong password is a configuration error that
// names store.redis, not a temporary one.
func TestRedisACLUser(t *testing.T) {
	srv := testredis.Start(t, "--user", "xoauthd", "on", ">s3cret", "~acl:*", "&acl:*", "+@all", "--user", "default", "off")
	key := newKey(t)
	conf := config.RedisStore{URL: srv.URL(), Username: "xoauthd", Password: "s3cret", Prefix: "acl:"}
	s := openRedisConf(t, conf, key)
	waitSubscribed(t, s)
	idp := newIdP(t, testidp.Options{})
	seed(t, s, idp, alice, publicClient, "at", time.Now().Add(time.Hour))
	m := NewManager(s, providersFor(msProvider(idp, publicClient, "", config.FlowAuthCode)), Options{})
	if _, err := m.Refresh(ctxT(t), alice, "at"); err != nil {
		t.Fatalf("a refresh (lock, compare-and-set, publish) as the ACL user: %v", err)
	}
	if st, err := s.List(time.Now()); err != nil || len(st) != 1 {
		t.Fatalf("List as the ACL user: %v, %v", st, err)
	}

	conf.Password = "wrong"
	bad, err := OpenRedis(conf, key, nil)
	if err == nil {
		bad.Close()
		t.Fatal("a wrong password opened the store")
	}
	if IsTemporary(err) || !strings.Contains(err.Error(), "store.redis.username and password") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong password: %v; want a configuration error naming the keys, without the password", err)
	}
}

// TestRedisSentinel: the store finds its master through Redis Sentinel.
func TestRedisSentinel(t *testing.T) {
	master := testredis.Start(t)
	sentinel := testredis.StartSentinel(t, master, "mymaster")
	conf := config.RedisStore{URL: "redis://unused:6379/0", Prefix: "sen:",
		Sentinel: config.RedisSentinel{Master: "mymaster", Addrs: []string{sentinel.Addr()}}}
	s, err := OpenRedis(conf, newKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(s.Describe(), "mymaster") {
		t.Errorf("Describe = %q", s.Describe())
	}
	idp := newIdP(t, testidp.Options{})
	seed(t, s, idp, alice, publicClient, "at", time.Now().Add(time.Hour))
	st, err := s.List(time.Now())
	if err != nil || len(st) != 1 || st[0].Identity != alice {
		t.Fatalf("List through the sentinel: %+v, %v", st, err)
	}
	// The value is in the master the sentinel named.
	if n, err := rawRedis(t, master).Exists(ctxT(t), "sen:id:"+alice).Result(); err != nil || n != 1 {
		t.Fatalf("the master holds %d token sets (%v), want 1", n, err)
	}
}

// TestRedisTLS: rediss:// verifies the server's certificate: with the
// private CA in store.redis.ca_file it works, without it the store does
// not open, and the error says to set ca_file.
func TestRedisTLS(t *testing.T) {
	srv := testredis.StartTLS(t)
	key := newKey(t)
	conf := config.RedisStore{URL: srv.URL(), CAFile: srv.CAFile(), Prefix: "tls:"}
	s := openRedisConf(t, conf, key)
	waitSubscribed(t, s)
	idp := newIdP(t, testidp.Options{})
	seed(t, s, idp, alice, publicClient, "at", time.Now().Add(time.Hour))
	if r, ok, err := s.getFresh(alice); err != nil || !ok || r.AccessToken != "at" {
		t.Fatalf("over TLS: %v, %v", ok, err)
	}

	conf.CAFile = ""
	_, err := OpenRedis(conf, key, nil)
	if err == nil || IsTemporary(err) || !strings.Contains(err.Error(), "store.redis.ca_file") {
		t.Fatalf("an unknown CA: %v; want a verification error that names store.redis.ca_file", err)
	}
}
