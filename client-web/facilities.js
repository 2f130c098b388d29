// The public list of participating facilities (公示, art. 3(2)): no login, no personal data.
"use strict";

const KINDS = {
  hospital: "病院",
  clinic: "診療所",
  dental_clinic: "歯科診療所",
  pharmacy: "薬局",
  visiting_nurse_station: "訪問看護ステーション",
  care_management_office: "居宅介護支援事業所",
  home_help_office: "訪問介護事業所",
  day_service: "通所介護",
  other: "その他",
};

document.addEventListener("DOMContentLoaded", async () => {
  const list = document.getElementById("facility-list");
  try {
    const response = await fetch("/api/v1/facilities");
    if (!response.ok) throw new Error(String(response.status));
    for (const facility of await response.json()) {
      const row = document.createElement("tr");
      for (const text of [facility.name, KINDS[facility.kind] ?? facility.kind, facility.address]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      list.append(row);
    }
  } catch {
    document.getElementById("facility-error").textContent = "一覧を読み込めませんでした。";
  }
});
