package testidp_test

import (
	"context"
	"fmt"
	"log"
	"net/url"

	"golang.org/x/oauth2"

	"github.com/xoauthd/xoauthd/internal/testidp"
)

// A public client signs in with PKCE without a browser.
func Example() {
	idp, err := testidp.Start(testidp.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer idp.Close()
	idp.AddClient(testidp.Client{ID: "app", Public: true})
	idp.AddUser("alice@contoso.com")

	base := idp.Authority() + "/contoso.onmicrosoft.com/oauth2/v2.0/"
	cfg := &oauth2.Config{
		ClientID:    "app",
		Endpoint:    oauth2.Endpoint{AuthURL: base + "authorize", TokenURL: base + "token", AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: "http://localhost:8400/",
		Scopes:      []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access", "openid"},
	}
	verifier := oauth2.GenerateVerifier()
	redirect, err := idp.Authorize(cfg.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("login_hint", "alice@contoso.com")))
	if err != nil {
		log.Fatal(err)
	}
	u, _ := url.Parse(redirect)
	tok, err := cfg.Exchange(context.Background(), u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", u.Query().Get("state"))
	fmt.Println("scope:", tok.Extra("scope"))
	fmt.Println("refresh token:", tok.RefreshToken != "")
	fmt.Println("token requests:", idp.Counts()["authorization_code"])
	// Output:
	// state: state-1
	// scope: https://outlook.office.com/IMAP.AccessAsUser.All openid
	// refresh token: true
	// token requests: 1
}
