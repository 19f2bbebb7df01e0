// The playground draws as the spec is edited: the form is submitted in the background, a moment
// after typing stops, and the errors and the curve of the latest edit are swapped in.
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
      for (const id of ["errors", "preview"]) document.getElementById(id).innerHTML = page.getElementById(id).innerHTML;
      history.replaceState(null, "", "/ui/playground?" + query);
    }, 300);
  });
})();
