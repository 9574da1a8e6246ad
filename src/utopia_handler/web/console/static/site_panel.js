// Loads the site panel after the order page, so a slow UTOPIA never holds the page up.
document.addEventListener("DOMContentLoaded", function () {
  var holder = document.getElementById("site-panel");
  if (!holder || !holder.dataset.src) { return; }
  fetch(holder.dataset.src, { credentials: "same-origin" })
    .then(function (reply) { return reply.ok ? reply.text() : Promise.reject(reply.status); })
    .then(function (html) { holder.innerHTML = html; })
    .catch(function () { holder.querySelector(".hint").textContent = "The site panel could not be loaded; open it with the link."; });
});
