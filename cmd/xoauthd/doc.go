// Command xoauthd lets legacy mail clients log in with a local user name and
// password while it talks SASL XOAUTH2 to Microsoft 365 or Gmail on their behalf.
//
// Run "xoauthd --help" for the subcommands.
package main
