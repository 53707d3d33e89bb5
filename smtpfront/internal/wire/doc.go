// Package wire holds smtpfront's DATA codec: a Decoder that undoes the
// client's dot-stuffing and an Encoder that stuffs the message again
// towards the upstream, both on whole runs of bytes and byte-for-byte
// equal to the go-smtp and net/textproto code they replace. Its API is
// the two types; the session, the connection wrappers and the pipelining
// stay in smtpfront, which they share state with.
package wire
