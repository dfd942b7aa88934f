// owlearn page: draw or upload, get an answer (or a refusal), teach new classes. No build step.
"use strict";

const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const $ = (id) => document.getElementById(id);
let drawing = false, dirty = false, lastSent = 0, examples = [], pending = null;

function blank() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  dirty = false;
}

function point(ev) {
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height];
}

canvas.addEventListener("pointerdown", (ev) => {
  drawing = true;
  canvas.setPointerCapture(ev.pointerId);
  const [x, y] = point(ev);
  ctx.beginPath();
  ctx.moveTo(x, y);
  ctx.lineTo(x + 0.01, y);
  stroke();
});
canvas.addEventListener("pointermove", (ev) => {
  if (!drawing) return;
  const [x, y] = point(ev);
  ctx.lineTo(x, y);
  stroke();
  if (performance.now() - lastSent > 350) recognise();  // live answer while drawing
});
for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, () => { if (drawing) { drawing = false; recognise(); } });
}

function stroke() {
  ctx.lineWidth = 18;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#000";
  ctx.stroke();
  dirty = true;
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch { body = { detail: res.statusText }; }
  if (!res.ok) throw new Error(body.detail || `HTTP ${res.status}`);
  return body;
}

async function recognise() {
  if (!dirty) return;
  lastSent = performance.now();
  const image = canvas.toDataURL("image/png");
  pending = image;
  try {
    const answer = await api("/api/predict/drawing", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ image }),
    });
    if (pending === image) show(answer);
  } catch (err) { status(err.message, true); }
}

function show(a) {
  const answer = $("answer"), verdict = $("verdict");
  answer.textContent = a.known ? a.answer : "unknown";
  answer.className = "answer" + (a.known ? "" : " unknown");
  if (a.known) {
    verdict.textContent = `Recognised as ${a.answer} (${(a.confidence * 100).toFixed(1)}% confident)`;
    verdict.className = "verdict known";
  } else {
    verdict.textContent = `Refused: this is not like anything I know (closest: ${a.nearest})`;
    verdict.className = "verdict refused";
  }
  $("top").innerHTML = "";
  for (const t of a.top) {
    const li = document.createElement("li");
    li.innerHTML = `<span></span><span class="bar"></span><span></span>`;
    li.children[0].textContent = t.class;
    li.children[1].style.width = `${Math.max(2, t.probability * 100)}%`;
    li.children[2].textContent = `${(t.probability * 100).toFixed(1)}%`;
    $("top").appendChild(li);
  }
  $("score").textContent = a.novelty_score === undefined ? "" :
    `novelty score ${a.novelty_score.toFixed(3)} (refused below ${a.threshold.toFixed(3)})`;
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = "status" + (error ? " error" : "");
}

$("clear").addEventListener("click", () => {
  blank();
  $("answer").textContent = "—";
  $("answer").className = "answer";
  $("verdict").textContent = "Draw on the canvas or upload an image.";
  $("verdict").className = "verdict";
  $("top").innerHTML = "";
  $("score").textContent = "";
});

$("upload").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("image", file);
  try { show(await api("/api/predict", { method: "POST", body: form })); status(`Uploaded ${file.name}`); }
  catch (err) { status(err.message, true); }
  ev.target.value = "";
});

$("token").value = localStorage.getItem("owlearn-token") || "";
$("token").addEventListener("change", () => localStorage.setItem("owlearn-token", $("token").value));

$("teach-add").addEventListener("click", () => {
  if (!dirty) { status("Draw an example first.", true); return; }
  examples.push(canvas.toDataURL("image/png"));
  $("teach-count").textContent = `${examples.length} example${examples.length === 1 ? "" : "s"}`;
  blank();
  status("Example added; draw the next one.");
});

$("teach-submit").addEventListener("click", async () => {
  const name = $("teach-name").value.trim();
  if (!name) { status("Give the class a name.", true); return; }
  if (examples.length < 2) { status("Add at least two examples.", true); return; }
  try {
    const r = await api("/api/classes", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${$("token").value}` },
      body: JSON.stringify({ name, images: examples, drawings: true }),
    });
    status(`Learned "${r.added}" from ${r.examples} examples.`);
    examples = [];
    $("teach-count").textContent = "0 examples";
    $("teach-name").value = "";
    loadClasses();
  } catch (err) { status(err.message, true); }
});

async function forget(name) {
  try {
    await api(`/api/classes/${encodeURIComponent(name)}`, {
      method: "DELETE", headers: { Authorization: `Bearer ${$("token").value}` },
    });
    status(`Forgot "${name}".`);
    loadClasses();
  } catch (err) { status(err.message, true); }
}

async function loadClasses() {
  try {
    const m = await api("/api/model");
    const added = new Set(m.added_classes.map((a) => a.name));
    $("classes").innerHTML = "";
    for (const c of m.classes) {
      const li = document.createElement("li");
      li.textContent = c;
      if (added.has(c)) {
        const b = document.createElement("button");
        b.textContent = "forget";
        b.addEventListener("click", () => forget(c));
        li.appendChild(b);
      }
      $("classes").appendChild(li);
    }
    if (!m.can_learn) $("teach-submit").disabled = true;
  } catch (err) { status(err.message, true); }
}

blank();
loadClasses();
