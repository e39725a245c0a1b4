// llm2clip chat page: plain ES module, no dependencies, no CDN. Talks to this server's
// OpenAI-compatible /v1/chat/completions with stream + include_usage and keeps the conversation here.
const $ = (id) => document.getElementById(id);
const log = $('log');
const prompt = $('prompt');
const pending = $('pending');
const composer = $('composer');
const history = []; // OpenAI messages sent so far (images as data URLs)
let images = []; // data URLs waiting to be sent
let modelId;
let controller;

const settings = ['api-key', 'max-tokens', 'temperature', 'system'];
for (const id of settings) {
  const el = $(id);
  const saved = localStorage.getItem(`llm2clip:${id}`);
  if (saved !== null) el.value = saved;
  el.addEventListener('change', () => localStorage.setItem(`llm2clip:${id}`, el.value));
}

function headers() {
  const h = { 'Content-Type': 'application/json' };
  const key = $('api-key').value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function refreshHealth() {
  const badge = $('health');
  try {
    const r = await fetch('health');
    const body = await r.json();
    badge.textContent = body.status;
    badge.className = `badge ${body.status}`;
    if (!modelId || body.status === 'ready') {
      const m = await fetch('v1/models', { headers: headers() });
      if (m.ok) {
        modelId = (await m.json()).data[0].id;
        $('model').textContent = modelId;
      }
    }
    return body.status;
  } catch {
    badge.textContent = 'offline';
    badge.className = 'badge offline';
    return 'offline';
  }
}
refreshHealth();
setInterval(refreshHealth, 5000);

// ---- images: file picker, drag and drop, paste ----
const DIRECT = ['image/png', 'image/jpeg', 'image/webp', 'image/gif'];

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(fr.result);
    fr.onerror = () => reject(fr.error);
    fr.readAsDataURL(file);
  });
}

/** Data URL of the file; big or unusual images are re-encoded as JPEG of at most 1536 px. */
async function toDataUrl(file) {
  if (DIRECT.includes(file.type) && file.size <= 4 * 1024 * 1024) return readAsDataUrl(file);
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, 1536 / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL('image/jpeg', 0.9);
}

async function addFiles(files) {
  for (const f of files) {
    if (!f.type.startsWith('image/')) continue;
    try {
      images.push(await toDataUrl(f));
    } catch (e) {
      addMessage('error', `Could not read ${f.name}: ${e.message ?? e}`);
    }
  }
  renderPending();
}

function renderPending() {
  pending.replaceChildren(
    ...images.map((url, i) => {
      const fig = document.createElement('figure');
      const img = document.createElement('img');
      img.src = url;
      img.alt = `image ${i + 1}`;
      const rm = document.createElement('button');
      rm.type = 'button';
      rm.textContent = '×';
      rm.title = 'remove';
      rm.onclick = () => {
        images.splice(i, 1);
        renderPending();
      };
      fig.append(img, rm);
      return fig;
    }),
  );
}

$('file-input').addEventListener('change', (e) => {
  addFiles([...e.target.files]);
  e.target.value = '';
});
document.addEventListener('dragover', (e) => {
  e.preventDefault();
  composer.classList.add('dragging');
});
document.addEventListener('dragleave', () => composer.classList.remove('dragging'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  composer.classList.remove('dragging');
  addFiles([...(e.dataTransfer?.files ?? [])]);
});
document.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
  if (files.length) {
    e.preventDefault();
    addFiles(files);
  }
});

// ---- messages ----
function addMessage(role, text, imgs = []) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  for (const url of imgs) {
    const img = document.createElement('img');
    img.src = url;
    img.alt = 'attached image';
    div.append(img);
  }
  const span = document.createElement('span');
  span.className = 'text';
  span.textContent = text;
  div.append(span);
  log.append(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

function timingsText(usage, t) {
  const parts = [`${usage.prompt_tokens} prompt tokens (${usage.prompt_tokens_details?.cached_tokens ?? 0} cached)`, `${usage.completion_tokens} generated`];
  if (t) {
    if (t.images_encoded) parts.push(`image encode ${t.image_encode_ms} ms`);
    parts.push(`prefill ${t.prefill_ms} ms`, `first token ${t.time_to_first_token_ms} ms`);
    if (t.decode_tokens_per_second !== null) parts.push(`${t.decode_tokens_per_second} tok/s`);
  }
  return parts.join(' · ');
}

/** Reads an SSE body and calls onData with each parsed `data:` payload (stops at [DONE]). */
async function readSse(body, onData) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, at);
      buf = buf.slice(at + 2);
      const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      if (!data) continue;
      if (data === '[DONE]') return;
      onData(JSON.parse(data));
    }
  }
}

async function send() {
  const text = prompt.value.trim();
  if (!text && images.length === 0) return;
  const content = [...images.map((url) => ({ type: 'image_url', image_url: { url } })), ...(text ? [{ type: 'text', text }] : [])];
  addMessage('user', text, images);
  const userMessage = { role: 'user', content };
  prompt.value = '';
  images = [];
  renderPending();

  const bubble = addMessage('assistant', '');
  bubble.dataset.state = 'streaming';
  bubble.dataset.chunks = '0';
  const out = bubble.querySelector('.text');
  const system = $('system').value.trim();
  const messages = [...(system ? [{ role: 'system', content: system }] : []), ...history, userMessage];
  const body = {
    ...(modelId ? { model: modelId } : {}),
    messages,
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: Number($('max-tokens').value) || 256,
    temperature: Number($('temperature').value),
  };
  controller = new AbortController();
  $('send').hidden = true;
  $('stop').hidden = false;
  let answer = '';
  try {
    const r = await fetch('v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!r.ok) {
      const err = await r.json().catch(() => ({ error: { message: `HTTP ${r.status}` } }));
      throw new Error(err.error?.message ?? `HTTP ${r.status}`);
    }
    await readSse(r.body, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        answer += delta;
        out.textContent = answer;
        bubble.dataset.chunks = String(Number(bubble.dataset.chunks) + 1);
        log.scrollTop = log.scrollHeight;
      }
      if (chunk.choices?.[0]?.finish_reason) bubble.dataset.finish = chunk.choices[0].finish_reason;
      if (chunk.usage) {
        const t = document.createElement('small');
        t.className = 'timings';
        t.textContent = timingsText(chunk.usage, chunk.timings);
        bubble.append(t);
      }
    });
    history.push(userMessage, { role: 'assistant', content: answer });
    bubble.dataset.state = 'done';
  } catch (e) {
    bubble.dataset.state = 'error';
    out.textContent = answer + (answer ? '\n' : '') + (e.name === 'AbortError' ? '[stopped]' : `Error: ${e.message}`);
    if (e.name === 'AbortError') history.push(userMessage, { role: 'assistant', content: answer });
  } finally {
    $('send').hidden = false;
    $('stop').hidden = true;
    controller = undefined;
    prompt.focus();
  }
}

composer.addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});
prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    send();
  }
});
$('stop').addEventListener('click', () => controller?.abort());
$('new-chat').addEventListener('click', () => {
  controller?.abort();
  history.length = 0;
  log.replaceChildren();
});
