// The playground draws as the spec is edited: the form is submitted in the background, a moment
// after typing stops, and the errors and the curve of the latest edit are swapped in (the chart,
// chart.js, reads the curve from the page: #preview-data).
(() => {
  const form = document.getElementById("playground");
  let timer, latest = 0;
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const query = new URLSearchParams(new FormData(form)).toString();
      const asked = ++latest;
      const answer = await fetch("/ui/playground?" + query, {headers: {"x-lrtower-fragment": "1"}});
      if (!answer.ok || asked !== latest) return;  // a later edit's drawing wins, whatever arrives last
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      if (asked !== latest) return;
      for (const id of ["errors", "preview", "hints", "torch"]) document.getElementById(id).innerHTML = page.getElementById(id).innerHTML;
      history.replaceState(null, "", "/ui/playground?" + query);
      document.dispatchEvent(new Event("lrtower:refreshed"));  // the chart draws the new preview
    }, 300);
  });
})();

// The type picker fills the editor with the chosen type's example (valid, with its defaults
// shown), and draws it.
(() => {
  const picker = document.getElementById("type-picker");
  const examples = JSON.parse(document.getElementById("examples").textContent);
  picker.addEventListener("change", () => {
    if (!picker.value) return;
    const spec = document.getElementById("spec");
    spec.value = JSON.stringify(examples[picker.value], null, 2);
    spec.dispatchEvent(new Event("input", {bubbles: true}));
  });
})();

// "Copy as torch code": to the clipboard where the page may write it (a secure origin), else by
// selecting the code and copying the selection.
document.addEventListener("click", async event => {
  if (event.target.id !== "copy-torch") return;
  const code = document.getElementById("torch-code");
  try {
    await navigator.clipboard.writeText(code.textContent);
  } catch (error) {
    getSelection().selectAllChildren(code);
    document.execCommand("copy");
  }
  event.target.textContent = "Copied";
  setTimeout(() => { event.target.textContent = "Copy as torch code"; }, 1500);
});
