import { createHash } from 'node:crypto'

/**
 * Server-rendered pages for login, MFA, consent and device flow: one stylesheet, and no script
 * except the fixed WebAuthn script below, allowed by its hash in the page's CSP.
 */
const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
}

export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]!)
}

export const STYLESHEET_PATH = '/realms/_assets/login.css'

export const STYLESHEET = `body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}
main{max-width:22rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:6px;box-shadow:0 1px 4px rgba(0,0,0,.15)}
h1{font-size:1.3rem;margin-top:0}h2{font-size:1.05rem;margin:1.4rem 0 .3rem}label{display:block;margin:.8rem 0 .2rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
button{margin-top:1rem;width:100%;padding:.6rem;font-size:1rem;cursor:pointer}
.error{color:#b00020}.secret{font-family:monospace;word-break:break-all;background:#f0f0f0;padding:.4rem}
ul.codes{font-family:monospace}`

export function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>${esc(title)}</title>
<link rel="stylesheet" href="${STYLESHEET_PATH}"></head>
<body><main><h1>${esc(title)}</h1>
${body}
</main></body></html>`
}

export function errorLine(message: string | undefined): string {
  return message ? `<p class="error" role="alert">${esc(message)}</p>` : ''
}

/**
 * The only script of the login and account pages: runs the WebAuthn ceremony whose options the
 * page carries as a JSON data block (never executed), then posts the credential with the form
 * (which carries the CSRF token). Fixed text: pages allow exactly it by its SHA-256 in their CSP.
 */
export const WEBAUTHN_SCRIPT = `(() => {
  const form = document.getElementById('webauthn-form');
  const button = document.getElementById('webauthn-start');
  const status = document.getElementById('webauthn-status');
  const options = JSON.parse(document.getElementById('webauthn-options').textContent);
  const bytes = (s) => {
    const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
    return Uint8Array.from(b, (c) => c.charCodeAt(0)).buffer;
  };
  const text = (buf) => {
    let s = '';
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  };
  const ids = (list) => (list || []).map((c) => ({ ...c, id: bytes(c.id) }));
  if (!window.PublicKeyCredential || !navigator.credentials) {
    button.disabled = true;
    status.textContent = 'This browser cannot use passkeys.';
    return;
  }
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.textContent = '';
    const create = form.dataset.mode === 'create';
    try {
      const publicKey = { ...options, challenge: bytes(options.challenge) };
      if (create) {
        publicKey.user = { ...options.user, id: bytes(options.user.id) };
        publicKey.excludeCredentials = ids(options.excludeCredentials);
      } else {
        publicKey.allowCredentials = ids(options.allowCredentials);
      }
      const cred = create
        ? await navigator.credentials.create({ publicKey })
        : await navigator.credentials.get({ publicKey });
      const r = cred.response;
      const response = { clientDataJSON: text(r.clientDataJSON) };
      if (create) {
        response.attestationObject = text(r.attestationObject);
        response.transports = r.getTransports ? r.getTransports() : [];
      } else {
        response.authenticatorData = text(r.authenticatorData);
        response.signature = text(r.signature);
        if (r.userHandle) response.userHandle = text(r.userHandle);
      }
      form.elements.credential.value = JSON.stringify({
        id: cred.id,
        rawId: text(cred.rawId),
        type: cred.type,
        response,
        authenticatorAttachment: cred.authenticatorAttachment || undefined,
        clientExtensionResults: cred.getClientExtensionResults(),
      });
      form.submit();
    } catch {
      status.textContent = 'The passkey was not used. Try again.';
      button.disabled = false;
    }
  });
})();`

/** CSP source expression allowing exactly WEBAUTHN_SCRIPT. */
export const WEBAUTHN_SCRIPT_SRC = `'sha256-${createHash('sha256').update(WEBAUTHN_SCRIPT).digest('base64')}'`

/** JSON safe inside a <script type="application/json"> element. */
function jsonData(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
}

/**
 * A form that runs one WebAuthn ceremony (`create` to register, `get` to authenticate) and posts
 * the credential to `action` with the given hidden fields (the CSRF token).
 */
export function webauthnForm(opts: {
  mode: 'create' | 'get'
  action: string
  hidden: string
  options: unknown
  button: string
  nameField?: boolean
}): string {
  const name = opts.nameField
    ? `<label for="passkey-name">Name for this passkey</label>
<input id="passkey-name" name="name" type="text" maxlength="64" placeholder="e.g. work laptop">`
    : ''
  return `<form method="post" action="${esc(opts.action)}" id="webauthn-form" data-mode="${opts.mode}">${opts.hidden}
<input type="hidden" name="credential" value="">${name}
<button type="button" id="webauthn-start">${esc(opts.button)}</button>
<p id="webauthn-status" class="error" role="status"></p></form>
<script type="application/json" id="webauthn-options">${jsonData(opts.options)}</script>
<script>${WEBAUTHN_SCRIPT}</script>`
}
