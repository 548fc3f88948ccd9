/** Server-rendered pages for login, MFA, consent and device flow: no script, one stylesheet. */
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
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}
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
