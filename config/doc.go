// Package config owns xoauthd's YAML configuration: the schema, defaults and
// provider presets, ${env:NAME} and ${file:PATH} secret references, strict
// decoding and validation that reports every problem with its YAML path and
// line, and (with the hot-reload issue) watching the file and swapping an
// immutable snapshot atomically.
package config
