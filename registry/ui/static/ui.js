// The registry's web UI: progressive enhancement only. Every page reads without this
// file; it adds copy buttons (hidden until it runs) and nothing else.
"use strict";

document.documentElement.classList.add("js");

function announce(text) {
  const live = document.getElementById("live");
  if (live) {
    live.textContent = "";
    window.setTimeout(() => { live.textContent = text; }, 50);
  }
}

function copyWithSelection(text) {
  // For browsers without the asynchronous clipboard (plain HTTP on another host).
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch (error) {
    copied = false;
  }
  area.remove();
  return copied;
}

async function copy(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (error) {
      // Denied: try the older way.
    }
  }
  return copyWithSelection(text);
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  const text = button.dataset.copy;
  const copied = await copy(text);
  button.textContent = copied ? "Copied" : "Select and copy";
  button.classList.toggle("done", copied);
  announce(copied ? "Copied: " + text : "Could not copy; select the text instead.");
  window.setTimeout(() => {
    button.textContent = "Copy";
    button.classList.remove("done");
  }, 2000);
});
