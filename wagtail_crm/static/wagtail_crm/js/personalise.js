/*
 * wagtail_crm edge-cache mode: swap the visitor's personalised content into a page cached for everyone.
 *
 * The page holds each personalised block's default inside <div data-crm-slot="<block id>"> and greetings
 * inside <span data-crm-greeting="Hello, {name}">. This script asks the fragment endpoint (data-endpoint) for
 * this visitor's version, once per page view, and replaces them. The request also reports the page view.
 * Without JavaScript, or if the request fails, the default content stays.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch || !window.URLSearchParams) {
    return;
  }
  var endpoint = script.getAttribute("data-endpoint");
  var page = script.getAttribute("data-page");
  if (!endpoint || !page) {
    return;
  }

  function run() {
    var slots = document.querySelectorAll("[data-crm-slot]");
    var greetings = document.querySelectorAll("[data-crm-greeting]");
    var params = new URLSearchParams();
    params.set("page", page);
    params.set("url", window.location.href);
    if (document.referrer) {
      params.set("ref", document.referrer);
    }
    Array.prototype.forEach.call(slots, function (slot) {
      params.append("slot", slot.getAttribute("data-crm-slot"));
    });
    if (greetings.length) {
      params.set("greeting", "1");
    }
    fetch(endpoint + "?" + params.toString(), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data) {
          return;
        }
        Array.prototype.forEach.call(slots, function (slot) {
          var html = data.slots && data.slots[slot.getAttribute("data-crm-slot")];
          if (typeof html === "string") {
            slot.innerHTML = html;
            slot.setAttribute("data-crm-loaded", "");
          }
        });
        if (data.name) {
          Array.prototype.forEach.call(greetings, function (greeting) {
            var format = greeting.getAttribute("data-crm-greeting");
            var parts = format.split("{name}");
            greeting.textContent = parts[0] + data.name + parts.slice(1).join(data.name);
          });
        }
        document.dispatchEvent(new CustomEvent("wagtail-crm:personalised", { detail: data }));
      })
      .catch(function () {
        /* the default content stays */
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", run);
  } else {
    run();
  }
})();
