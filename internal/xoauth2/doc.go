// Package xoauth2 implements the client side of SASL XOAUTH2 as Microsoft and
// Google define it: the initial response, a go-sasl Client that answers the
// JSON error challenge with an empty response, and decoding of that challenge.
package xoauth2
