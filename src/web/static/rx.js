// The prescribing form's arithmetic: choosing a drug sets the dose unit to its dispensing unit
// (片, 袋, 支), and the quantity is worked out as doses × doses a day × days, in dispensing
// units (a dose in mg or g is divided by the drug's strength), until the doctor types a quantity
// of their own. Without JavaScript the fields are simply typed.
(function () {
  'use strict';
  var drug = document.getElementById('drug');
  var dose = document.getElementById('dose');
  var unit = document.getElementById('dose-unit');
  var freq = document.getElementById('freq');
  var days = document.getElementById('days');
  var qty = document.getElementById('qty');
  if (!drug || !dose || !unit || !freq || !days || !qty) return;

  function selected(select) {
    return select.selectedIndex >= 0 ? select.options[select.selectedIndex] : null;
  }

  function perDose(option) {
    var d = parseFloat(dose.value);
    if (!(d > 0)) return NaN;
    var u = unit.value.trim().toLowerCase();
    if (u === option.dataset.unit) return d;
    var mg = parseFloat(option.dataset.mg);
    if (!(mg > 0)) return NaN;
    if (u === 'mg') return d / mg;
    if (u === 'g') return (d * 1000) / mg;
    return NaN;
  }

  function work() {
    if (qty.dataset.typed === 'true') return;
    var option = selected(drug);
    var f = selected(freq);
    if (!option || !option.dataset.unit || !f) return;
    var each = perDose(option);
    var total;
    if (f.value === 'once') {
      total = each;
    } else {
      var perDay = parseFloat(f.dataset.perDay);
      var n = parseInt(days.value, 10);
      total = each * perDay * n;
    }
    if (total > 0 && isFinite(total)) {
      qty.value = String(Math.ceil(total - 1e-9));
      qty.dataset.worked = 'true';
    }
  }

  drug.addEventListener('change', function () {
    var option = selected(drug);
    if (option && option.dataset.unit) unit.value = option.dataset.unit;
    work();
  });
  [dose, unit, days].forEach(function (el) { el.addEventListener('input', work); });
  freq.addEventListener('change', work);
  qty.addEventListener('input', function () {
    qty.dataset.typed = qty.value.trim() === '' ? 'false' : 'true';
  });
})();
