package config

import (
	"strings"
	"testing"
)

// redisYAML is validYAML with the Redis backend; its store lines are
// 1 store, 2 key, 3 backend, 4 redis, 5 url, 6 password, and the rest of
// validYAML follows from line 7.
func redisYAML(t *testing.T, redis string) string {
	t.Helper()
	return variant(t, "  key: ${file:store.key}\n", "  key: ${file:store.key}\n  backend: redis\n  redis:\n"+redis)
}

func TestRedisStoreConfig(t *testing.T) {
	t.Setenv("REDIS_PW", "s3cret")
	src := redisYAML(t, "    url: rediss://redis.example.net:6380/2\n    password: ${env:REDIS_PW}\n    username: xoauthd\n    sentinel: {master: mymaster, addrs: [\"s1:26379\", \"s2:26379\"]}\n")
	cfg, ps, _ := parseIn(t, src)
	if ps != nil {
		t.Fatalf("problems: %v", ps)
	}
	r := cfg.Store.Redis
	if !cfg.Store.IsRedis() || r.URL != "rediss://redis.example.net:6380/2" || r.Password.Reveal() != "s3cret" || r.Username != "xoauthd" ||
		r.Prefix != DefaultRedisPrefix || r.Sentinel.Master != "mymaster" || len(r.Sentinel.Addrs) != 2 {
		t.Errorf("store = %+v", cfg.Store)
	}
	if strings.Contains(r.Password.String(), "s3cret") {
		t.Error("the Redis password prints")
	}
}

// TestRedisNoKeyBesideStoreWarning: the key beside store.path is no
// concern with the redis backend, which writes no token file there.
func TestRedisNoKeyBesideStoreWarning(t *testing.T) {
	beside := "  path: /var/lib/xoauthd/tokens.json\n  key: ${file:/var/lib/xoauthd/store.key}\n"
	cfg, ps, _ := parseIn(t, variant(t, "  key: ${file:store.key}\n", beside))
	if ps != nil || len(cfg.Warnings()) != 1 {
		t.Fatalf("file backend: problems %v, warnings %v; want the key-beside-store warning", ps, cfg.Warnings())
	}
	cfg, ps, _ = parseIn(t, variant(t, "  key: ${file:store.key}\n", beside+"  backend: redis\n  redis: {url: \"redis://r:6379\"}\n"))
	if ps != nil || len(cfg.Warnings()) != 0 {
		t.Fatalf("redis backend: problems %v, warnings %v; want none", ps, cfg.Warnings())
	}
}

func TestStoreBackendDefault(t *testing.T) {
	cfg, ps, _ := parseIn(t, validYAML)
	if ps != nil {
		t.Fatal(ps)
	}
	if cfg.Store.Backend != BackendFile || cfg.Store.IsRedis() || cfg.Store.Redis.Prefix != "" {
		t.Errorf("store = %+v", cfg.Store)
	}
}

// TestRedisSectionCheckedWithFileBackend: store.redis beside the file
// backend (for "xoauthd store migrate") is checked too.
func TestRedisSectionCheckedWithFileBackend(t *testing.T) {
	src := variant(t, "  key: ${file:store.key}\n", "  key: ${file:store.key}\n  redis:\n    url: http://redis:6379\n")
	checkOneProblem(t, problemCase{src: src, path: "store.redis.url", line: 4, msg: "is not redis or rediss"})
	cfg, ps, _ := parseIn(t, variant(t, "  key: ${file:store.key}\n", "  key: ${file:store.key}\n  redis:\n    url: redis://redis:6379\n"))
	if ps != nil || cfg.Store.Backend != BackendFile || cfg.Store.Redis.Prefix != DefaultRedisPrefix {
		t.Fatalf("store = %+v, problems %v", cfg.Store, ps)
	}
}

func TestRedisStoreProblems(t *testing.T) {
	url := "    url: redis://127.0.0.1:6379/0\n"
	for _, tc := range []problemCase{
		{name: "unknown backend", src: variant(t, "  key: ${file:store.key}\n", "  key: ${file:store.key}\n  backend: etcd\n"), path: "store.backend", line: 3, msg: "unknown store backend \"etcd\"; known: file, redis"},
		{name: "no url", src: redisYAML(t, "    prefix: x\n"), path: "store.redis.url", line: 4, msg: "missing; the Redis server"},
		{name: "wrong scheme", src: redisYAML(t, "    url: http://redis:6379\n"), path: "store.redis.url", line: 5, msg: "scheme \"http\" is not redis or rediss"},
		{name: "password in url", src: redisYAML(t, "    url: redis://:pw@redis:6379\n"), path: "store.redis.url", line: 5, msg: "must not contain the password"},
		{name: "user in url", src: redisYAML(t, "    url: redis://me@redis:6379\n"), path: "store.redis.url", line: 5, msg: "store.redis.username"},
		{name: "database not a number", src: redisYAML(t, "    url: redis://redis:6379/zero\n"), path: "store.redis.url", line: 5, msg: "database \"zero\" is not a number"},
		{name: "no host", src: redisYAML(t, "    url: redis:///0\n"), path: "store.redis.url", line: 5, msg: "has no host"},
		{name: "query", src: redisYAML(t, "    url: redis://redis:6379/0?dial_timeout=1s\n"), path: "store.redis.url", line: 5, msg: "options in the URL"},
		{name: "ca_file without tls", src: redisYAML(t, url+"    ca_file: /etc/ca.pem\n"), path: "store.redis.ca_file", line: 6, msg: "rediss://"},
		{name: "prefix pattern", src: redisYAML(t, url+"    prefix: \"a*\"\n"), path: "store.redis.prefix", line: 6, msg: "pattern characters"},
		{name: "sentinel without master", src: redisYAML(t, url+"    sentinel:\n      addrs: [\"s1:26379\"]\n"), path: "store.redis.sentinel.master", line: 6, msg: "master group"},
		{name: "sentinel without addrs", src: redisYAML(t, url+"    sentinel:\n      master: mymaster\n"), path: "store.redis.sentinel.addrs", line: 6, msg: "list the sentinels"},
		{name: "sentinel bad addr", src: redisYAML(t, url+"    sentinel:\n      master: m\n      addrs: [\"s1\"]\n"), path: "store.redis.sentinel.addrs[0]", line: 8, msg: "is not host:port"},
		{name: "password missing env", src: redisYAML(t, url+"    password: ${env:XOAUTHD_TEST_UNSET_PW}\n"), path: "store.redis.password", line: 6, msg: "XOAUTHD_TEST_UNSET_PW"},
		{name: "reference in url", src: redisYAML(t, "    url: ${env:REDIS_URL}\n"), path: "store.redis.url", line: 5, msg: "resolved only in secret fields (client_secret, password_hash, store.key, store.redis.password"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}
