// The print views' toolbar: the print button opens the browser's print dialogue.
document.addEventListener('click', (e) => {
  if (e.target.closest('[data-print]')) window.print();
});
