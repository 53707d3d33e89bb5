package tokens

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/tlsroots"
)

// Timeouts of the Redis client: short, so that a login that needs the
// store while Redis is down gets its "try again later" quickly.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = 2 * time.Second
)

// OpenBackend opens the token store that s configures: the encrypted file
// at store.path (store.backend: file, the default) or Redis.
func OpenBackend(s config.Store, key []byte, log *slog.Logger) (Backend, error) {
	var b Backend
	var err error
	if s.IsRedis() {
		b, err = OpenRedis(s.Redis, key, log)
	} else {
		b, err = OpenStore(s.Path, key)
	}
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return b, nil
}

// OpenRedis connects to the Redis of store.redis (directly or through its
// sentinels; TLS for rediss://, always verified) and returns the store.
func OpenRedis(c config.RedisStore, key []byte, log *slog.Logger) (*RedisStore, error) {
	silenceRedisLog.Do(func() { redis.SetLogger(quietRedisLog{}) })
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("store.redis.url: %w", err)
	}
	opts, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("store.redis.url: %w", err)
	}
	if opts.TLSConfig != nil {
		roots, err := tlsroots.WithFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store.redis.ca_file: %w", err)
		}
		opts.TLSConfig.RootCAs = roots
		opts.TLSConfig.MinVersion = tls.VersionTLS12
	}
	desc := "Redis " + u.Scheme + "://" + u.Host + u.Path
	var rdb *redis.Client
	if c.Sentinel.Master != "" {
		desc = fmt.Sprintf("Redis master %s via sentinels %s", c.Sentinel.Master, strings.Join(c.Sentinel.Addrs, ","))
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.Sentinel.Master, SentinelAddrs: c.Sentinel.Addrs,
			Username: c.Username, Password: c.Password.Reveal(), DB: opts.DB, TLSConfig: opts.TLSConfig,
			DialTimeout: redisDialTimeout, ReadTimeout: redisIOTimeout, WriteTimeout: redisIOTimeout,
			MaxRetries: 1, DisableIdentity: true,
		})
	} else {
		opts.Username, opts.Password = c.Username, c.Password.Reveal()
		rdb = redis.NewClient(redisClientOptions(opts))
	}
	return NewRedisStore(rdb, key, RedisOptions{Prefix: c.Prefix, Describe: desc, Logger: log})
}

// quietRedisLog drops the client library's own log lines (every failed
// dial and reconnect during an outage, written to stderr by default):
// the store says what matters once, through its logger, and the library
// offers only a process-wide setting for it.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

var silenceRedisLog sync.Once

// redisClientOptions sets what xoauthd needs of a client: short timeouts,
// one retry, and nothing beyond the commands it uses.
func redisClientOptions(o *redis.Options) *redis.Options {
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = redisDialTimeout, redisIOTimeout, redisIOTimeout
	o.MaxRetries = 1
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return o
}
