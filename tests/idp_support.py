"""A person's access token from the real identity provider, by the authorization code flow with PKCE over HTTP.

The browser tests log in with Chromium; API tests use this: the same login form, the same token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

DEMO_PASSWORD = "lindendam-demo"  # examples/demo-people.json: demo only
TEST_REDIRECT_URI = "http://127.0.0.1:9/callback"  # never served: the code is read from the redirect


def person_tokens(issuer: str, *, client_id: str, client_secret: str, email: str,
                  password: str = DEMO_PASSWORD) -> dict[str, str]:
    """Log a demo person in and return the token response (access_token, id_token, ...)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        answer = client.get(f"{issuer}/auth", params={
            "client_id": client_id, "response_type": "code", "scope": "openid email profile schakel",
            "redirect_uri": TEST_REDIRECT_URI, "code_challenge": challenge, "code_challenge_method": "S256",
            "state": secrets.token_urlsafe(8)})
        form = client.get(urljoin(issuer, answer.headers["location"]))
        action = re.search(r'action="([^"]+)"', form.text)
        assert action, form.text
        answer = client.post(urljoin(issuer, action.group(1)), data={"email": email, "password": password})
        while answer.status_code in (302, 303) and not answer.headers["location"].startswith(TEST_REDIRECT_URI):
            answer = client.get(urljoin(issuer, answer.headers["location"]))
        assert answer.status_code in (302, 303), f"login of {email} failed: {answer.status_code}"
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        tokens = client.post(f"{issuer}/token", auth=(client_id, client_secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": TEST_REDIRECT_URI,
            "code_verifier": verifier})
        assert tokens.status_code == 200, tokens.text
        result: dict[str, str] = tokens.json()
        return result
