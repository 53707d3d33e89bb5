package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Token store backends (store.backend).
const (
	BackendFile  = "file"  // one encrypted file (store.path): one host or one pod
	BackendRedis = "redis" // a Redis (or Valkey) shared by several replicas
)

// DefaultRedisPrefix starts every Redis key xoauthd writes, so that several
// deployments can share one Redis.
const DefaultRedisPrefix = "xoauthd:"

var backends = []string{BackendFile, BackendRedis}

// RedisStore configures the Redis backend of the token store.
type RedisStore struct {
	// URL is redis://HOST:PORT/DB or rediss://... (TLS, always verified).
	// Without a sentinel it names the server; with one only its scheme and
	// database number are used.
	URL      string `yaml:"url"`
	CAFile   string `yaml:"ca_file"`  // extra CA for a rediss:// server's certificate
	Username string `yaml:"username"` // ACL user; empty: the default user
	Password Secret `yaml:"password"` // usually ${file:...} or ${env:...}
	Prefix   string `yaml:"prefix"`   // default DefaultRedisPrefix
	// Sentinel, when Master is set, finds the server through Redis Sentinel.
	Sentinel RedisSentinel `yaml:"sentinel"`
}

// RedisSentinel names a Redis Sentinel deployment.
type RedisSentinel struct {
	Master string   `yaml:"master"` // the master group's name
	Addrs  []string `yaml:"addrs"`  // host:port of the sentinels
}

// IsRedis reports whether the tokens are kept in Redis.
func (s Store) IsRedis() bool { return s.Backend == BackendRedis }

func (s *Store) applyDefaults() {
	if s.Backend == "" {
		s.Backend = BackendFile
	}
	if (s.Backend == BackendRedis || s.Redis.URL != "") && s.Redis.Prefix == "" {
		s.Redis.Prefix = DefaultRedisPrefix
	}
}

// storeBackend checks store.backend and store.redis (when it is used, or
// set for "xoauthd store migrate").
func (k *checker) storeBackend() {
	s := k.c.Store
	k.oneOf("store.backend", "store backend", s.Backend, backends)
	if s.Backend != BackendRedis && s.Redis.URL == "" {
		return
	}
	r := s.Redis
	const at = "store.redis"
	if r.URL == "" {
		k.addf(at+".url", "missing; the Redis server, like rediss://redis.example.net:6379/0 (or redis:// without TLS)")
	} else if msg := checkRedisURL(r.URL); msg != "" {
		k.addf(at+".url", "%s", msg)
	}
	if r.CAFile != "" && !strings.HasPrefix(r.URL, "rediss://") {
		k.addf(at+".ca_file", "is only used with TLS; write the url as rediss://...")
	}
	if strings.ContainsAny(r.Prefix, " \t\r\n*?[]") {
		k.addf(at+".prefix", "%s may not contain spaces or the pattern characters * ? [ ]", quoteShort(r.Prefix))
	}
	if r.Sentinel.Master == "" && len(r.Sentinel.Addrs) > 0 {
		k.addf(at+".sentinel.master", "missing; the name of the master group the sentinels watch, like mymaster")
	}
	if r.Sentinel.Master != "" && len(r.Sentinel.Addrs) == 0 {
		k.addf(at+".sentinel.addrs", "missing; list the sentinels as host:port, like [sentinel-0:26379, sentinel-1:26379]")
	}
	for i, a := range r.Sentinel.Addrs {
		if msg := checkAddr(a, true); msg != "" {
			k.addf(fmt.Sprintf("%s.sentinel.addrs[%d]", at, i), "%s", msg)
		}
	}
}

// checkRedisURL returns what is wrong with a store.redis.url, or "".
func checkRedisURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Sprintf("%s is not a URL; write it like rediss://redis.example.net:6379/0", quoteShort(raw))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Sprintf("scheme %s is not redis or rediss; write it like rediss://redis.example.net:6379/0", quoteShort(u.Scheme))
	}
	if u.Host == "" {
		return "has no host; write it like rediss://redis.example.net:6379/0"
	}
	if _, set := u.User.Password(); set {
		return "must not contain the password; put it in store.redis.password, e.g. password: ${file:/run/secrets/redis-password}"
	}
	if u.User != nil {
		return "must not contain a user; put it in store.redis.username"
	}
	if db := strings.Trim(u.Path, "/"); db != "" && strings.Trim(db, "0123456789") != "" {
		return fmt.Sprintf("database %s is not a number; write it like /0", quoteShort(db))
	}
	if u.RawQuery != "" {
		return "options in the URL are not supported; use the keys of store.redis"
	}
	return ""
}
