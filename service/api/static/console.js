// Live refresh of a console page: its main part is fetched again a few seconds after the last
// fetch settled, and swapped in, unless someone is filling in one of its forms. One fetch at a
// time: a slow server gets fewer requests, not a growing pile of them. A hidden tab fetches
// nothing. Served from the package, as every console script, so that the pages' Content-Security-
// Policy can allow only the server's own scripts.
(() => {
  const every = Number(document.currentScript.dataset.refreshMs);
  const main = document.getElementById("main");
  const editing = () => main.contains(document.activeElement) && document.activeElement.matches("input, textarea, select")
    || [...main.querySelectorAll("form[method=post] textarea, form[method=post] input:not([type=checkbox])")].some(f => f.value)
    || main.querySelector("input[form=compare]:checked") !== null;  // runs being chosen to compare
  // The new main part replaces the old, except the elements marked data-keep (a chart), which
  // stay as they are and are told to fetch their own data again.
  const swap = text => {
    const kept = [...main.querySelectorAll("[data-keep][id]")];
    main.replaceChildren(...new DOMParser().parseFromString(text, "text/html").body.childNodes);
    for (const element of kept) {
      const place = document.getElementById(element.id);
      if (place) place.replaceWith(element);
    }
    document.dispatchEvent(new Event("lrtower:refreshed"));
  };
  const refresh = async () => {
    try {
      if (!document.hidden && !editing()) {
        const answer = await fetch(location.href, {headers: {"x-lrtower-fragment": "1"}});
        const text = answer.ok ? await answer.text() : null;
        if (text !== null && !editing()) swap(text);
      }
    } catch (error) {
      // The server is restarting or the network is down: try again next time.
    } finally {
      setTimeout(refresh, every);
    }
  };
  setTimeout(refresh, every);
})();
