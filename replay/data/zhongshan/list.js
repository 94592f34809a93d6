/* Column list of the Guangdong platform: the rows come from the gkmlpt API, whose requests
   carry a token computed from the page's nonce and the current time window. */
(function () {
  var box = document.getElementById("news-list");
  if (!box || !window.fetch) {
    return;
  }
  var nonce = box.getAttribute("data-nonce");
  var page = parseInt(box.getAttribute("data-page"), 10);
  var perPage = parseInt(box.getAttribute("data-per-page"), 10);
  var apiPerPage = parseInt(box.getAttribute("data-api-per-page"), 10);
  var windowSeconds = parseInt(box.getAttribute("data-window"), 10);
  var api = box.getAttribute("data-api");

  function fnv1a(text) {
    var hash = 0x811c9dc5;
    for (var i = 0; i < text.length; i++) {
      hash = Math.imul(hash ^ text.charCodeAt(i), 16777619) >>> 0;
    }
    return ("0000000" + hash.toString(16)).slice(-8);
  }

  function shortTitle(title, limit) {
    var chars = Array.from(title);
    return chars.length > limit ? chars.slice(0, limit).join("") + "..." : title;
  }

  function row(item) {
    var li = document.createElement("li");
    var date = document.createElement("span");
    date.className = "date";
    date.textContent = "[" + String(item.created_at).slice(0, 10) + "]";
    var link = document.createElement("a");
    link.setAttribute("href", new URL(item.post_url, location.href).pathname);
    link.setAttribute("title", item.title);
    link.setAttribute("target", "_blank");
    link.textContent = shortTitle(item.title, 34);
    li.appendChild(date);
    li.appendChild(link);
    return li;
  }

  var token = fnv1a(nonce + ":" + Math.floor(Date.now() / 1000 / windowSeconds));
  var first = (page - 1) * perPage;
  var last = first + perPage;
  var apiPages = [];
  for (var p = Math.floor(first / apiPerPage) + 1; p <= Math.floor((last - 1) / apiPerPage) + 1; p++) {
    apiPages.push(p);
  }
  Promise.all(apiPages.map(function (number) {
    var url = api + "&page=" + number + "&token=" + encodeURIComponent(token);
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) {
        throw new Error("gkmlpt API answered " + response.status);
      }
      return response.json();
    });
  })).then(function (answers) {
    var items = [];
    answers.forEach(function (answer) {
      items = items.concat(answer.articles || []);
    });
    var offset = (apiPages[0] - 1) * apiPerPage;
    items.slice(first - offset, last - offset).forEach(function (item) {
      box.appendChild(row(item));
    });
  }).catch(function (error) {
    box.setAttribute("data-error", String(error));
  });
})();
