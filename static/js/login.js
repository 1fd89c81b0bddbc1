// Log in with the access token; the server answers with a session cookie.
const form = document.querySelector("#login-form");
const error = document.querySelector("#login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: form.token.value }),
  }).catch(() => null);
  if (response?.ok) {
    const next = new URLSearchParams(location.search).get("next");
    // Only a path on this server: never an address elsewhere.
    location.replace(next && next.startsWith("/") && !next.startsWith("//") ? next : location.pathname === "/login" ? "/" : location.href);
  } else {
    error.textContent = response?.status === 401 ? "Wrong token." : "The server did not answer; try again.";
  }
});
