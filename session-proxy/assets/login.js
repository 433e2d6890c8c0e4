// The sign-in page. After signing in, go back to `next` only if it is a
// page of this site: it is parsed as a browser would and its origin
// compared, so `//evil`, `/\evil` or `/%09/evil` cannot lead elsewhere.
'use strict';

function sameSitePath(next) {
  if (!next) return '/';
  let url;
  try { url = new URL(next, location.origin); } catch (_) { return '/'; }
  if (url.origin !== location.origin) return '/';
  return url.pathname + url.search + url.hash;
}

document.getElementById('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const err = document.getElementById('login-error');
  err.hidden = true;
  const body = JSON.stringify({
    username: document.getElementById('username').value,
    password: document.getElementById('password').value,
  });
  try {
    const r = await fetch('/api/login', {method: 'POST', headers: {'content-type': 'application/json'}, body, credentials: 'same-origin'});
    if (!r.ok) {
      const j = await r.json().catch(() => ({}));
      throw new Error((j.error && j.error.message) || ('sign-in failed (' + r.status + ')'));
    }
    location.href = sameSitePath(new URLSearchParams(location.search).get('next'));
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  }
});
